"""A forkq job result (``forkq.results.Result``) seen as a Django ``TaskResult``.

Statuses: ``queued`` is ``READY`` (also after a failed run that forkq will retry), ``running``
is ``RUNNING``, ``succeeded`` is ``SUCCESSFUL``, ``failed`` is ``FAILED``. ``errors`` hold one
``TaskError`` per failed run (class path and traceback); ``worker_ids`` one worker identity per
run started, so ``attempts`` counts runs. ``started_at`` is the start of the first run (Django's
definition), ``last_attempted_at`` that of the last.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from django.conf import settings

from ... import results

from .compat import TaskError, TaskResult, TaskResultStatus

STATUSES = {results.QUEUED: TaskResultStatus.READY, results.RUNNING: TaskResultStatus.RUNNING,
            results.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
            results.FAILED: TaskResultStatus.FAILED,
            # Django's tasks have no cancelled status: a cancelled task did not succeed
            results.CANCELLED: TaskResultStatus.FAILED}


def to_task_result(task, jid: str, result: results.Result | None, args: list,
                   kwargs: dict) -> TaskResult:
    """The ``TaskResult`` of task ``task`` run as job ``jid``; ``result`` None means none kept
    yet (a task just pushed)."""
    result = result or results.Result(jid=jid, status=results.QUEUED)
    return _made(task, jid, args, kwargs, result.status, result.enqueued_at, result.started_at,
                 result.first_started_at, result.finished_at, result.errors, result.worker_ids,
                 result.value)


def record_task_result(task, jid: str, record: dict, args: list, kwargs: dict) -> TaskResult:
    """``to_task_result`` of the record a worker's thread just wrote (``ResultRecorder``'s, so
    checked or built by it), read as ``results.result_of`` reads it, without its ``Result``."""
    return _made(task, jid, args, kwargs, record["status"], record.get("enqueued_at"),
                 record.get("started_at"), record.get("first_started_at"),
                 record.get("finished_at"), record.get("errors") or [],
                 record.get("worker_ids") or [], record.get("value"))


def _made(task, jid: str, args: list, kwargs: dict, status: str, enqueued_at, started_at,
          first_started_at, finished_at, errors: list, worker_ids: list, value) -> TaskResult:
    aware = settings.USE_TZ  # read once: each read goes through Django's lazy settings
    last = when(started_at, aware)
    first = (last if first_started_at in (None, started_at)
             else when(first_started_at, aware))
    made = TaskResult(task=task, id=jid, status=STATUSES[status],
                      enqueued_at=when(enqueued_at, aware), started_at=first,
                      finished_at=when(finished_at, aware), last_attempted_at=last,
                      args=args, kwargs=kwargs, backend=task.backend,
                      errors=[task_error(error) for error in errors],
                      worker_ids=list(worker_ids))
    object.__setattr__(made, "_return_value", value)
    return made


def finished_result(started: TaskResult, record: dict) -> TaskResult:
    """The ``TaskResult`` of a run that ended as ``record`` (the final record the worker
    wrote, JSON-read values) says, from the one ``started`` that its start made: a copy, its
    status, ``finished_at``, return value and new errors changed, as Django's own backends
    change theirs; the rest (arguments, times, workers) is the start's, not built again."""
    made = object.__new__(TaskResult)  # copy.copy's reduce protocol costs 4x this
    for name in _KEPT:
        object.__setattr__(made, name, getattr(started, name))
    new_errors = (record.get("errors") or [])[len(started.errors):]
    for name, value in (("status", STATUSES[record["status"]]),
                        ("finished_at", when(record.get("finished_at"))),
                        ("errors", [*started.errors, *map(task_error, new_errors)]),
                        ("worker_ids", list(started.worker_ids)),
                        ("_return_value", record.get("value"))):
        object.__setattr__(made, name, value)  # a frozen dataclass, as Django sets its own
    return made


#: what ``finished_result`` sets anew; the other fields of ``TaskResult`` are copied
_CHANGED = ("status", "finished_at", "errors", "worker_ids", "_return_value")
_KEPT = tuple(each.name for each in dataclasses.fields(TaskResult) if each.name not in _CHANGED)


class RecordedError(TaskError):
    """A ``TaskError`` whose class path comes from a record in Redis: ``exception_class``
    resolves it among the modules already imported (``results.exception_class``), where
    Django's would import whatever module the record names."""

    __slots__ = ()

    @property
    def exception_class(self) -> type[BaseException]:
        return results.exception_class(self.exception_class_path)


def task_error(error: dict[str, str]) -> TaskError:
    # forkq writes builtins unqualified (Sidekiq's ``error_class``); Django shows the path.
    path = error["class"] if "." in error["class"] else f"builtins.{error['class']}"
    return RecordedError(exception_class_path=path, traceback=error["traceback"])


def when(timestamp: float | None, aware: bool | None = None) -> datetime | None:
    """Epoch seconds as Django's datetimes: aware (UTC) with ``USE_TZ`` (or ``aware``, when
    the caller read it), else naive local."""
    if timestamp is None:
        return None
    if settings.USE_TZ if aware is None else aware:
        return datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return datetime.fromtimestamp(timestamp)
