"""``ForkqBackend``: Django's tasks framework on forkq.

    TASKS = {"default": {"BACKEND": "forkq.contrib.django.ForkqBackend",
                         "QUEUES": ["default", "emails"],
                         "OPTIONS": {"REDIS_URL": "redis://localhost:6379/0"}}}

Runs in the application's processes (enqueue, results) and in forkq's workers (which define
the tasks by importing their installed apps' ``tasks`` modules and ``require:``). Every task is
pushed as a ``RunTask`` job (``jobs.py``) whose ``jid`` is the ``TaskResult``'s ``id``, whose
``wrapped`` field is the task's module path (logs, the web UI and metrics show that name) and
whose arguments carry the task's ``using()`` settings (``records.py``).

- Arguments are checked by Django first (``TaskResult`` normalises them to JSON: its
  ``TypeError`` names the unsupported type), then by forkq's rule (no NaN, no non-string keys);
  what is pushed is the normalised form, which is what the task receives and the result shows.
- ``run_after`` puts the job in forkq's ``schedule`` (it runs once due, as ``perform_at``).
- A task's priority (-100..100, Django's range) is the job's ``priority`` option
  (``flow/placement.py``): within its queue, a task of higher priority starts before any of
  lower priority, in push order within one priority, in both layouts. ``get_result`` shows
  it.
- The ``TaskResult`` that ``enqueue`` returns equals ``get_result(id)`` until the job starts:
  ``enqueued_at`` is the push's one clock read, which the ``queued`` record also holds.
- Results are kept ``RESULT_TTL`` seconds (``forkq.results``) and read by ``get_result``.
- A task is pushed as any job is (``Client.prepare``, then ``Client.push_prepared`` or, for
  ``aenqueue``, ``Client.admit`` and ``aio.push_payloads``): client middleware runs for tasks.
  A push the middleware stops sends no ``task_enqueued``; its result is never found.
- Under ``forkq.testing.inline()``/``fake()`` tasks go to the test sink, as any job does.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from ... import aio, results
from ... import client as forkq_client
from ...payload import check_args, check_value

from . import options, records, registry
from .compat import (BaseTaskBackend, InvalidTask, TaskResult, TaskResultDoesNotExist,
                     TaskResultStatus, task_enqueued)
from .jobs import RESULTS_UNDER_TEST, RunTask
from .taskresults import to_task_result


def worker_queues(queue_names) -> list[str]:
    """The forkq queues to list under ``queues:`` of the worker: the task queues, sorted."""
    return sorted(queue_names)


def _under_test() -> bool:
    """Whether ``forkq.testing``'s ``inline()`` or ``fake()`` holds the process's pushes."""
    return forkq_client.default().sink is not None


class ForkqBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        self.settings = options.parse(self.options, alias)

    def worker_queues(self) -> list[str]:
        return worker_queues(self.queues)

    #: every layout orders a queue by priority (``flow/placement.py``)
    supports_priority = True

    # --- definition

    def validate_task(self, task) -> None:
        super().validate_task(task)
        if task.func.__module__ == "__main__":
            raise InvalidTask(f"task {task.name!r} is defined in __main__, which a worker cannot "
                              f"import; define it in an installed app's tasks.py")
        if not getattr(task.func, "forkq_stand_in", False):
            registry.register(task)

    # --- enqueue

    def enqueue(self, task, args, kwargs):
        producer = self._client()
        draft, prepared, at = self._prepare(producer, task, args, kwargs)
        pushed = producer.push_prepared(prepared, at)
        return self._enqueued(draft, prepared.payload, pushed)

    async def aenqueue(self, task, args, kwargs):
        producer = self._client()
        draft, prepared, at = self._prepare(producer, task, args, kwargs)
        admitted = producer.admit([prepared])
        pushed = bool(admitted) and bool(await aio.push_payloads(
            admitted, at, producer, now=prepared.payload["created_at"]))
        return self._enqueued(draft, prepared.payload, pushed)

    def _prepare(self, producer, task, args, kwargs):
        """Django's checks (the task, then its arguments, by building the ``TaskResult``),
        then forkq's; the ``RunTask`` push (``Client.prepare``) and its run time."""
        self.validate_task(task)
        draft = TaskResult(task=task, id="", status=TaskResultStatus.READY, enqueued_at=None,
                           started_at=None, finished_at=None, last_attempted_at=None,
                           args=args, kwargs=kwargs, backend=self.alias, errors=[],
                           worker_ids=[])
        where = f"{task.module_path}.enqueue"
        check_args(draft.args, where)
        for name, value in draft.kwargs.items():
            check_value(value, f"{where}: kwargs[{name!r}]")
        job_options = {"queue": task.queue_name, "retry": self.settings.retry,
                       "result_ttl": self.settings.result_ttl}
        if task.priority:
            job_options["priority"] = task.priority
        at = task.run_after.timestamp() if task.run_after is not None else None
        prepared = producer.prepare(RunTask, records.pack(task, draft.args, draft.kwargs),
                                    job_options, at, where=where)
        prepared.payload["wrapped"] = task.module_path
        return draft, prepared, at

    def _enqueued(self, draft, payload: dict[str, Any], pushed: bool):
        queued = results.Result(jid=payload["jid"], status=results.QUEUED,
                                enqueued_at=payload["created_at"])
        task_result = to_task_result(draft.task, payload["jid"], queued, draft.args,
                                     draft.kwargs)
        if pushed:
            task_enqueued.send(type(self), task_result=task_result)
        if _under_test():  # inline() ran it already: its result; fake() holds it: READY
            return RESULTS_UNDER_TEST.setdefault(payload["jid"], task_result)
        return task_result

    # --- results

    def get_result(self, result_id: str):
        if _under_test():
            return self._result_under_test(result_id)
        return self._task_result(result_id, results.get(result_id, self._client().source))

    async def aget_result(self, result_id: str):
        if _under_test():
            return self._result_under_test(result_id)
        return self._task_result(result_id, await results.aget(result_id,
                                                               self._client().source))

    def _result_under_test(self, result_id: str):
        found = RESULTS_UNDER_TEST.get(result_id)
        if found is None:
            raise TaskResultDoesNotExist(f"no result {result_id!r} enqueued under "
                                         f"forkq.testing")
        return found

    def _task_result(self, result_id: str, result: results.Result | None):
        if result is None:
            raise TaskResultDoesNotExist(f"no result {result_id!r} (unknown, or older than "
                                         f"RESULT_TTL={self.settings.result_ttl} s)")
        record = records.unpack(result.args)
        if result.class_name != RunTask.wire_name() or record is None:
            raise TaskResultDoesNotExist(f"{result_id!r} is the result of the forkq job "
                                         f"{result.class_name!r}, not of a task")
        try:
            task = records.task_of(record, self.alias)
        except InvalidTask as exc:
            raise TaskResultDoesNotExist(f"result {result_id!r}: {exc}") from None
        return to_task_result(task, result_id, result, record.args, record.kwargs)

    # --- configuration

    def _client(self):
        if self.settings.problems:
            raise ImproperlyConfigured("; ".join(self.settings.problems))
        if _under_test():
            return forkq_client.default()  # inline() or fake(): every job goes to its sink
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
