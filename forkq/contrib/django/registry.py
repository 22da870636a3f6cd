"""The tasks this process may run, by module path, recorded when each task is defined.

``ForkqBackend.validate_task`` records every task as Django defines it (``@task`` at import,
``Task.using()``), so a worker knows exactly the tasks of the modules it imported (``require:``
and the installed apps' ``tasks`` modules, ``setup.discover_tasks``). A payload names a task by
its module path and is looked up here: nothing is ever imported because a payload says so
(DESIGN.md §5).
"""

from __future__ import annotations

import sys

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
            f"task {module_path!r} is not defined in this process: define it in an installed "
            f"app's tasks.py, or list the module that defines it under 'require:' in the "
            f"worker's forkq.yml")
    return task


def find(module_path: str):
    """The task at ``module_path`` if this process defined it or imported its module, else
    None. Only ``sys.modules`` is read: a module not yet imported stays so. (A task defined
    while another backend was configured is not in ``_tasks``, yet is the same task.)"""
    from .compat import Task

    known = _tasks.get(module_path)
    if known is not None:
        return known
    module_name, _, name = module_path.rpartition(".")
    found = getattr(sys.modules.get(module_name), name, None)
    return found if isinstance(found, Task) else None
