"""The tasks this process may run, by module path, recorded when each task is defined.

``ForkqBackend.validate_task`` records every task as Django defines it (``@task`` at import,
``Task.using()``), so a worker knows exactly the tasks of the modules its ``require:`` imported.
A payload names a task by its module path and is looked up here: nothing is ever imported
because a payload says so (DESIGN.md §5).
"""

from __future__ import annotations

from ...errors import UnknownJobError


class UnknownTaskError(UnknownJobError):
    """A payload names a task this process has not defined (retried like an unknown job)."""


#: module path → the task defined under it in this process
_tasks: dict = {}


def register(task) -> None:
    """Record ``task``; ``using()`` copies share the function and keep the first record."""
    known = _tasks.get(task.module_path)
    if known is None or known.func is not task.func:
        _tasks[task.module_path] = task


def lookup(module_path: str):
    task = _tasks.get(module_path)
    if task is None:
        raise UnknownTaskError(
            f"task {module_path!r} is not defined in this process: list the module that "
            f"defines it under 'require:' in the worker's forkq.yml (after "
            f"'forkq.contrib.django.boot')")
    return task
