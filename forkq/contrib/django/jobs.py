"""``RunTask``: the one forkq job that runs every Django task, in a forkq worker's thread.

Its arguments are ``[module_path, args, kwargs]``; the task is looked up among the tasks this
process defined (``registry``), never imported from the payload. The job itself only calls the
task (with a ``TaskContext`` when it ``takes_context``); the task's run protocol is a server
middleware the Django set-up registers in forkq's hooks (``task_protocol``): record the run as
started, send ``task_started``, let the job run, record the value or the error, send
``task_finished``. Stale database connections are closed around every job, tasks or not, by
another such middleware (``setup.close_connections_around``). A failure is raised
on to forkq, which retries it per the payload's ``retry`` (the backend's ``RETRY``) and finally
sends it to the dead set; the result shows every failure in ``errors``.

The protocol writes the task's results (the backend owns its tasks' results). A failure's result is
``READY`` when forkq will retry it, else ``FAILED``: decided here with the inputs the worker's
retry writer uses (``retry.decide``): the payload's ``retry``, ``RunTask``'s hook options and the
worker's ``max_retries``, which the worker's config gives the process's source (``use_config``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ... import Job, results
from ...connection.source import default_source
from ...errors import ConfigError, Shutdown
from ...ident import identity
from ...job import hooks_of

from . import registry
from .compat import TaskContext, task_finished, task_started
from .taskresults import to_task_result


class RunTask(Job):
    #: tells the processor not to record this job's results: ``task_protocol`` records them
    records_own_result = True

    def perform(self, module_path: str, args: list, kwargs: dict) -> Any:
        running = getattr(self, "task_result", None)
        if running is None:
            raise ConfigError("a Django task ran without forkq's Django set-up (no result, no "
                              "signals): start the worker with DJANGO_SETTINGS_MODULE set, or "
                              "list forkq.contrib.django.boot first under require:")
        return call(self.task, running, args, kwargs)


def task_protocol(job, payload: dict[str, Any], queue: str, call_next) -> Any:
    """Server middleware that the Django set-up registers in forkq's hooks: around a
    ``RunTask`` job, find the task, record the run as started, send ``task_started``, let the
    job call the task, record the value or the error and send ``task_finished``. Other jobs
    pass through."""
    if not isinstance(job, RunTask) or len(payload["args"]) != 3:
        return call_next()  # a malformed RunTask fails in perform, naming its arguments
    module_path, args, kwargs = payload["args"]
    task = registry.lookup(module_path)
    sender = type(task.get_backend())
    source = default_source()
    recorder, redis = results.ResultRecorder(source.keys), source.redis
    record = recorder.started(redis, payload, worker_id())
    job.task, job.task_result = task, _task_result(task, job.jid, record, args, kwargs)
    task_started.send(sender, task_result=job.task_result)
    try:
        value = call_next()
    except Shutdown:
        raise
    except BaseException as exc:
        retried = _will_retry(job, payload, exc, source.settings.max_retries)
        record = recorder.failed(redis, payload, exc, retried, record)
        task_finished.send(sender, task_result=_task_result(task, job.jid, record, args, kwargs))
        raise
    record = recorder.succeeded(redis, payload, value, record)
    task_finished.send(sender, task_result=_task_result(task, job.jid, record, args, kwargs))
    return value


def _task_result(task, jid: str, record: dict | None, args: list, kwargs: dict):
    result = results.decode_record(jid, record) if record is not None else None
    return to_task_result(task, jid, result, args, kwargs)


def _will_retry(job, payload: dict[str, Any], exc: BaseException, max_retries: int) -> bool:
    # Runs in the worker only: the application's processes import this module for ``RunTask``
    # (the backend pushes it) and need no worker code.
    from ...worker.retry import decide

    return decide(payload, exc, hooks_of(type(job)), max_retries).action == "retry"


def call(task, task_result, args: list, kwargs: dict) -> Any:
    if task.takes_context:
        return task.call(TaskContext(task_result=task_result), *args, **kwargs)
    return task.call(*args, **kwargs)


def worker_id() -> str:
    """This run's worker: host, process and thread (a result's ``worker_ids``)."""
    return identity(os.getpid(), threading.current_thread().name)
