"""``ForkqBackend``: Django's tasks framework on forkq.

    TASKS = {"default": {"BACKEND": "forkq.contrib.django.ForkqBackend",
                         "QUEUES": ["default", "emails"],
                         "OPTIONS": {"REDIS_URL": "redis://localhost:6379/0"}}}

Runs in the application's processes (enqueue, results) and in forkq's workers (which define
the tasks by importing their modules, listed under ``require:``). Every task is pushed as a
``RunTask`` job (``jobs.py``) whose ``jid`` is the ``TaskResult``'s ``id``.

- ``run_after`` puts the job in forkq's ``schedule`` (it runs once due, as ``perform_at``).
- Priority chooses among three queues per task queue, to be listed in strict order by the
  worker (``worker_queues()`` gives the list): priority > 0 goes to ``<queue>-high``,
  0 to ``<queue>`` itself, < 0 to ``<queue>-low``. Within a band, jobs run in push order.
- Results are kept ``RESULT_TTL`` seconds (``forkq.results``) and read by ``get_result``.
- Arguments must be JSON-native (forkq's rule, checked at enqueue; tuples are refused).
- A task is pushed as any job is (``Client.prepare``, then ``Client.push_prepared`` or, for
  ``aenqueue``, ``Client.admit`` and ``aio.push_payloads``): client middleware runs for tasks.
  A push the middleware stops sends no ``task_enqueued``; its result is never found.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from ... import aio, results
from ...payload import check_args, check_value

from . import options, registry
from .compat import BaseTaskBackend, InvalidTask, TaskResultDoesNotExist, task_enqueued
from .jobs import RunTask
from .taskresults import to_task_result


def queue_for(queue_name: str, priority: int) -> str:
    """The forkq queue of a task queue and priority (see the module's docstring)."""
    if priority > 0:
        return f"{queue_name}-high"
    if priority < 0:
        return f"{queue_name}-low"
    return queue_name


def worker_queues(queue_names) -> list[str]:
    """The forkq queues to list, in this strict order, under ``queues:`` of the worker."""
    names = sorted(queue_names)
    return ([queue_for(name, 1) for name in names] + names
            + [queue_for(name, -1) for name in names])


class ForkqBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        self.settings = options.parse(self.options, alias)

    def worker_queues(self) -> list[str]:
        return worker_queues(self.queues)

    # --- definition

    def validate_task(self, task) -> None:
        super().validate_task(task)
        if task.func.__module__ == "__main__":
            raise InvalidTask(f"task {task.name!r} is defined in __main__, which a worker cannot "
                              f"import; define it in a module listed under 'require:'")
        registry.register(task)

    # --- enqueue

    def enqueue(self, task, args, kwargs):
        producer = self._client()
        prepared, at = self._prepare(producer, task, args, kwargs)
        pushed = producer.push_prepared(prepared, at)
        return self._enqueued(task, prepared.payload, args, kwargs, pushed)

    async def aenqueue(self, task, args, kwargs):
        producer = self._client()
        prepared, at = self._prepare(producer, task, args, kwargs)
        admitted = producer.admit([prepared])
        pushed = bool(admitted) and bool(await aio.push_payloads(admitted, at, producer))
        return self._enqueued(task, prepared.payload, args, kwargs, pushed)

    def _prepare(self, producer, task, args, kwargs) -> tuple[Any, float | None]:
        """The ``RunTask`` push of a task (``Client.prepare``) and its run time."""
        self.validate_task(task)
        where = f"{task.module_path}.enqueue"
        args = list(args)
        check_args(args, where)
        kwargs = dict(kwargs)
        for name, value in kwargs.items():
            check_value(value, f"{where}: kwargs[{name!r}]")
        job_options = {"queue": queue_for(task.queue_name, task.priority),
                       "retry": self.settings.retry, "result_ttl": self.settings.result_ttl}
        at = task.run_after.timestamp() if task.run_after is not None else None
        prepared = producer.prepare(RunTask, [task.module_path, args, kwargs], job_options, at,
                                    where=where)
        return prepared, at

    def _enqueued(self, task, payload: dict[str, Any], args, kwargs, pushed: bool):
        queued = results.Result(jid=payload["jid"], status=results.QUEUED,
                                enqueued_at=payload["created_at"])
        task_result = to_task_result(task, payload["jid"], queued, list(args), dict(kwargs))
        if pushed:
            task_enqueued.send(type(self), task_result=task_result)
        return task_result

    # --- results

    def get_result(self, result_id: str):
        return self._task_result(result_id, results.get(result_id, self._client().source))

    async def aget_result(self, result_id: str):
        return self._task_result(result_id, await results.aget(result_id,
                                                               self._client().source))

    def _task_result(self, result_id: str, result: results.Result | None):
        if result is None:
            raise TaskResultDoesNotExist(f"no result {result_id!r} (unknown, or older than "
                                         f"RESULT_TTL={self.settings.result_ttl} s)")
        if result.class_name != RunTask.wire_name() or len(result.args) != 3:
            raise TaskResultDoesNotExist(f"{result_id!r} is the result of the forkq job "
                                         f"{result.class_name!r}, not of a task")
        module_path, args, kwargs = result.args
        try:
            task = registry.lookup(module_path)
        except registry.UnknownTaskError as exc:
            raise TaskResultDoesNotExist(f"result {result_id!r}: {exc}") from None
        return to_task_result(task, result_id, result, args, kwargs)

    # --- configuration

    def _client(self):
        if self.settings.problems:
            raise ImproperlyConfigured("; ".join(self.settings.problems))
        return self.settings.client()

    def check(self, **kwargs):
        where = f"TASKS[{self.alias!r}]"
        found = [checks.Error(problem, obj=where, id="forkq.E001")
                 for problem in self.settings.problems]
        listed = self.settings.config_queues
        missing = [name for name in self.worker_queues() if listed is not None
                   and name not in listed]
        if missing:
            found.append(checks.Warning(
                f"{where}: the forkq.yml in OPTIONS['CONFIG'] does not list the queues "
                f"{', '.join(missing)}; tasks sent there wait until a worker takes them",
                hint=f"queues: {self.worker_queues()}", obj=where, id="forkq.W001"))
        return found
