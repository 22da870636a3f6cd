"""Enqueue after the transaction commits, so the worker sees the rows the task reads.

``enqueue_on_commit(task, *args, **kwargs)`` is ``transaction.on_commit(partial(task.enqueue,
*args, **kwargs))``: outside a transaction it enqueues at once; inside, when the outermost
transaction commits, and never if it rolls back. It returns nothing: the ``TaskResult`` does not
exist before the commit (use ``task_enqueued`` to learn the id).
"""

from __future__ import annotations

from functools import partial

from django.db import transaction


def enqueue_on_commit(task, *args, using: str | None = None, **kwargs) -> None:
    """``task.enqueue(*args, **kwargs)`` once the transaction on ``using`` commits."""
    transaction.on_commit(partial(task.enqueue, *args, **kwargs), using=using)
