"""``RunTask``: the one forkq job that runs every Django task, in a forkq worker's thread.

Its arguments are ``[module_path, args, kwargs]``; the task is looked up among the tasks this
process defined (``registry``), never imported from the payload. Steps: record the run as
started, send ``task_started``, call the task (with a ``TaskContext`` when it
``takes_context``), record the value or the error, send ``task_finished``. Stale database
connections are closed around every job, tasks or not, by the server middleware that the
Django set-up registers in forkq's hooks (``setup.close_connections_around``). A failure is raised
on to forkq, which retries it per the payload's ``retry`` (the backend's ``RETRY``) and finally
sends it to the dead set; the result shows every failure in ``errors``.

This job writes its own results (the backend owns its tasks' results). A failure's result is
``READY`` when forkq will retry it: decided here with forkq's rule and the default
``max_retries`` (25), which a worker configured otherwise may contradict for ``RETRY: true``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from forkq import Job, client, results
from forkq.config import Config
from forkq.errors import Shutdown
from forkq.heartbeat import hostname
from forkq.retry import decide

from . import registry
from .compat import TaskContext, task_finished, task_started
from .taskresults import to_task_result


class RunTask(Job):
    #: tells the processor not to record this job's results: it records them itself
    records_own_result = True

    def perform(self, module_path: str, args: list, kwargs: dict) -> Any:
        task = registry.lookup(module_path)
        sender = type(task.get_backend())
        source = client.default()
        recorder = results.ResultRecorder(source.keys)
        redis = source.redis
        record = recorder.started(redis, self.payload, worker_id())
        running = self._task_result(task, record, args, kwargs)
        task_started.send(sender, task_result=running)
        try:
            value = call(task, running, args, kwargs)
        except Shutdown:
            raise
        except BaseException as exc:
            record = recorder.failed(redis, self.payload, exc, self._will_retry(exc))
            task_finished.send(sender, task_result=self._task_result(task, record, args, kwargs))
            raise
        record = recorder.succeeded(redis, self.payload, value)
        task_finished.send(sender, task_result=self._task_result(task, record, args, kwargs))
        return value

    def _task_result(self, task, record: dict | None, args: list, kwargs: dict):
        result = results.decode_record(self.jid, record) if record is not None else None
        return to_task_result(task, self.jid, result, args, kwargs)

    def _will_retry(self, exc: BaseException) -> bool:
        return decide(self.payload, exc, {}, Config.max_retries).action == "retry"


def call(task, task_result, args: list, kwargs: dict) -> Any:
    if task.takes_context:
        return task.call(TaskContext(task_result=task_result), *args, **kwargs)
    return task.call(*args, **kwargs)


def worker_id() -> str:
    """This run's worker: host, process and thread (a result's ``worker_ids``)."""
    return f"{hostname()}:{os.getpid()}:{threading.current_thread().name}"
