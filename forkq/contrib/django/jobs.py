"""``RunTask``: the one forkq job that runs every Django task, in a forkq worker's thread.

Its arguments are ``[module_path, args, kwargs, settings]`` (``records.py``); the task is looked
up among the tasks this process defined (``registry``), never imported from the payload, and
given its ``using()`` settings back. The job itself only calls the
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
A run that did not end is no failure: one over a forkq limiter's limit goes back to ``READY``
(no ``task_finished``: it runs again); one stopped at the shutdown deadline stays ``RUNNING``
until it starts again; one cancelled while running ends ``FAILED`` (Django's tasks have no
cancelled status), with ``task_finished`` and no error.
Under ``forkq.testing`` the job runs the task itself (``run_under_test``), results in memory.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from ... import Job, results
from ...connection.source import default_source
from ...errors import Cancelled, ConfigError, Shutdown
from ...ident import identity
from ...job import hooks_of
from ...limiter import OverLimit

from . import records
from .compat import TaskContext, task_finished, task_started
from .taskresults import finished_result, record_task_result, to_task_result


class RunTask(Job):
    #: tells the processor not to record this job's results: ``task_protocol`` records them
    records_own_result = True

    def perform(self, module_path: str, args: list, kwargs: dict,
                settings: dict | None = None) -> Any:
        running = getattr(self, "task_result", None)
        if running is None:
            raise ConfigError("a Django task ran without forkq's Django set-up (no result, no "
                              "signals): start the worker with DJANGO_SETTINGS_MODULE set, or "
                              "list forkq.contrib.django.boot first under require:")
        return call(self.task, running, args, kwargs)

    def run_under_test(self, payload: dict[str, Any]) -> Any:
        """How ``forkq.testing``'s ``inline()``/``fake()`` run a task: in this thread, with
        its signals, the result kept in memory (``RESULTS_UNDER_TEST``), not in Redis. A
        failure is raised on, as ``inline()`` does for any job."""
        record = records.unpack(payload["args"])
        if record is None:
            return self.perform(*payload["args"])  # fails, naming its arguments
        task = records.task_of(record, "default")
        sender, now = type(task.get_backend()), time.time()
        trace = {"status": results.RUNNING, "enqueued_at": payload.get("created_at", now),
                 "started_at": now, "worker_ids": ["forkq.testing"], "errors": []}
        self.task, self.task_result = task, _task_result(task, self.jid, trace, record)
        task_started.send(sender, task_result=self.task_result)
        try:
            trace["value"] = call(task, self.task_result, record.args, record.kwargs)
            trace["status"] = results.SUCCEEDED
        except BaseException as exc:
            trace["status"] = results.FAILED
            trace["errors"].append(results.error_of(exc))
            raise
        finally:
            trace["finished_at"] = time.time()
            finished = RESULTS_UNDER_TEST[self.jid] = _task_result(task, self.jid, trace, record)
            task_finished.send(sender, task_result=finished)
        return trace["value"]


#: jid → the ``TaskResult`` of a task run by ``forkq.testing`` (read by ``get_result`` there)
RESULTS_UNDER_TEST: dict[str, Any] = {}


def task_protocol(job, payload: dict[str, Any], queue: str, call_next) -> Any:
    """Server middleware that the Django set-up registers in forkq's hooks: around a
    ``RunTask`` job, find the task, record the run as started, send ``task_started``, let the
    job call the task, record the value or the error and send ``task_finished``. Other jobs
    pass through."""
    record = records.unpack(payload["args"]) if isinstance(job, RunTask) else None
    if record is None:
        return call_next()  # a malformed RunTask fails in perform, naming its arguments
    task = records.task_of(record, "default", strict=True)
    sender = type(task.get_backend())
    source = default_source()
    recorder, redis = results.ResultRecorder(source.keys), source.redis
    written = recorder.started(redis, payload, worker_id())
    job.task, job.task_result = task, _task_result(task, job.jid, written, record)
    task_started.send(sender, task_result=job.task_result)
    try:
        value = call_next()
    except Shutdown:
        raise  # pushed back to its queue: it starts again
    except OverLimit:
        recorder.postponed(redis, payload, written)  # not an end: READY until it runs again
        raise
    except Cancelled:
        written = recorder.cancelled(redis, payload, written)
        task_finished.send(sender, task_result=_ended(job.task_result, written))
        raise
    except BaseException as exc:
        retried = _will_retry(job, payload, exc, source.settings.max_retries)
        written = recorder.failed(redis, payload, exc, retried, written)
        task_finished.send(sender, task_result=_ended(job.task_result, written))
        raise
    written = recorder.succeeded(redis, payload, value, written)
    task_finished.send(sender, task_result=_ended(job.task_result, written))
    return value


def _task_result(task, jid: str, written: dict | None, record: records.Record):
    # ``written`` is the recorder's own record (built or checked by it): not checked again
    if written is None:
        return to_task_result(task, jid, None, record.args, record.kwargs)
    return record_task_result(task, jid, written, record.args, record.kwargs)


def _ended(started, written: dict | None):
    """The ``TaskResult`` ``task_finished`` sends: the run's start's, ended as ``written``
    says (a task keeping no result: as it started)."""
    return finished_result(started, written) if written is not None else started


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
    key = (os.getpid(), threading.current_thread().name)
    found = _WORKER_IDS.get(key)
    if found is None:
        found = _WORKER_IDS[key] = identity(*key)
    return found


#: (pid, thread name) → its identity: the host name is a system call, and threads live long
_WORKER_IDS: dict[tuple[int, str], str] = {}
