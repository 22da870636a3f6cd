"""A forkq job result (``forkq.results.Result``) seen as a Django ``TaskResult``.

Statuses: ``queued`` is ``READY`` (also after a failed run that forkq will retry), ``running``
is ``RUNNING``, ``succeeded`` is ``SUCCESSFUL``, ``failed`` is ``FAILED``. ``errors`` hold one
``TaskError`` per failed run (class path and traceback); ``worker_ids`` one worker identity per
run started, so ``attempts`` counts runs. ``started_at`` is the start of the first run (Django's
definition), ``last_attempted_at`` that of the last.
"""

from __future__ import annotations

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
    last = when(result.started_at)
    first = when(result.first_started_at) if result.first_started_at is not None else last
    made = TaskResult(task=task, id=jid, status=STATUSES[result.status],
                      enqueued_at=when(result.enqueued_at), started_at=first,
                      finished_at=when(result.finished_at), last_attempted_at=last,
                      args=args, kwargs=kwargs, backend=task.backend,
                      errors=[task_error(error) for error in result.errors],
                      worker_ids=list(result.worker_ids))
    object.__setattr__(made, "_return_value", result.value)
    return made


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


def when(timestamp: float | None) -> datetime | None:
    """Epoch seconds as Django's datetimes: aware (UTC) with ``USE_TZ``, else naive local."""
    if timestamp is None:
        return None
    if settings.USE_TZ:
        return datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return datetime.fromtimestamp(timestamp)
