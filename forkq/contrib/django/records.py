"""What a ``RunTask`` job's arguments say about its task: written at enqueue (``pack``), read
back by ``get_result`` and by the worker's run protocol (``unpack``, ``task_of``).

The arguments are ``[module_path, args, kwargs, settings]``, where ``settings`` holds what
``Task.using()`` may change: ``backend`` (the alias), ``queue_name``, ``priority`` and
``run_after`` (ISO 8601, so it reads back to the microsecond). Jobs pushed before ``settings``
existed have three arguments and read as the task's own settings.

A task is found, never imported (DESIGN.md §5): among the tasks this process defined
(``registry``), for a reader also among the modules it has already imported. A reader with
neither (a web process that never imported the task's module) gets a stand-in with the task's
module path and name, whose call raises; the worker accepts only defined tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import registry
from .compat import InvalidTask, InvalidTaskBackend, Task

#: what ``Task.using()`` may change, in the order ``settings`` lists it
USING = ("backend", "queue_name", "priority", "run_after")


@dataclass(frozen=True)
class Record:
    module_path: str
    args: list
    kwargs: dict
    #: the ``using()`` settings as enqueued ({} for a three-argument job)
    settings: dict


def pack(task, args: list, kwargs: dict) -> list:
    """``RunTask``'s arguments for ``task`` called with ``args`` and ``kwargs``."""
    run_after = task.run_after.isoformat() if task.run_after is not None else None
    return [task.module_path, args, kwargs,
            {"backend": task.backend, "queue_name": task.queue_name,
             "priority": task.priority, "run_after": run_after}]


def unpack(arguments: Any) -> Record | None:
    """The record of ``RunTask``'s arguments, or None when they are not a task's."""
    if not isinstance(arguments, list) or len(arguments) not in (3, 4):
        return None
    module_path, args, kwargs, *rest = arguments
    settings = rest[0] if rest else {}
    if not (isinstance(module_path, str) and isinstance(args, list)
            and isinstance(kwargs, dict) and isinstance(settings, dict)):
        return None
    return Record(module_path, args, kwargs, settings)


def task_of(record: Record, alias: str, *, strict: bool = False):
    """The task as it was enqueued: the defined task with the record's ``using()`` settings.

    ``strict`` (the worker): only a task this process defined, else ``UnknownTaskError``.
    Otherwise (a reader) an imported one or a stand-in on ``alias``. Settings this process's
    ``TASKS`` no longer accepts (an alias or queue since removed) leave the task as defined."""
    if strict:
        base = registry.lookup(record.module_path)
    else:
        base = registry.find(record.module_path) or stand_in(record, alias)
    changes = {name: value for name, value in using_settings(record.settings).items()
               if getattr(base, name) != value}  # using() builds and validates a new Task
    try:
        return base.using(**changes) if changes else base
    except (InvalidTask, InvalidTaskBackend):
        return base


def using_settings(settings: dict) -> dict[str, Any]:
    """The ``using()`` keywords a record's settings give (unknown or empty values skipped)."""
    changes = {name: settings[name] for name in USING if settings.get(name) is not None}
    if isinstance(changes.get("run_after"), str):
        changes["run_after"] = datetime.fromisoformat(changes["run_after"])
    return changes


def stand_in(record: Record, alias: str):
    """A task named as the record's, for a process that never imported its module: its
    ``name``, ``module_path`` and settings are the record's; calling it raises."""
    module, _, name = record.module_path.rpartition(".")

    def absent(*args, **kwargs):
        raise registry.UnknownTaskError(f"task {record.module_path!r} is not defined in this "
                                        f"process (its module was never imported)")

    absent.__module__, absent.__qualname__, absent.__name__ = module, name, name
    absent.forkq_stand_in = True  # ForkqBackend.validate_task does not register it
    settings = {"backend": alias, **using_settings(record.settings)}
    try:
        return Task(func=absent, **settings)
    except (InvalidTask, InvalidTaskBackend):
        return Task(func=absent, backend=alias)  # settings this process no longer accepts
