"""Which batch the code running in this context (thread or task) belongs to: the batch block
open around an enqueue (``batch.py``), and the batch of the job the worker is running.

Apart from ``batch.py`` so that the client, which asks ``collecting()`` on every push, does not
import the batch module, which imports the client.
"""

from __future__ import annotations

import contextvars
from typing import Any

#: the innermost batch block open in this context (a ``batch.Batch``)
_open: contextvars.ContextVar = contextvars.ContextVar("forkq_batch", default=None)
#: the bid of the batch job running in this context (set by the worker around perform)
_running: contextvars.ContextVar[str | None] = contextvars.ContextVar("forkq_batch_job",
                                                                      default=None)


def collecting():
    """The open batch block (``batch.Batch``) that an enqueue in this context joins, if any."""
    return _open.get()


def running(payload: dict[str, Any]):
    """Mark ``payload``'s batch as the running job's (returns a token for ``done``), so a
    batch the job opens becomes its child."""
    return _running.set(payload.get("bid"))


def done(token) -> None:
    _running.reset(token)
