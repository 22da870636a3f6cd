"""Expiring jobs: a job carrying ``expires_in`` (seconds) that has not started within that time
of its enqueue is discarded, not run.

Runs in the processor thread, before a job starts. The enqueue time is the payload's
``enqueued_at`` (set again each time the job enters a queue: pushed, moved from ``schedule`` or
``retry`` by the poller, requeued), else its ``created_at``; each is read as float seconds or,
past ``payload.MS_THRESHOLD``, as integer milliseconds (Sidekiq 8: ``payload.epoch_seconds``).
A job without a readable time or a usable ``expires_in`` never expires. The processor logs the discard, counts it
(``forkq_jobs_expired_total``) and releases the job's unique lock.
"""

from __future__ import annotations

import math
from typing import Any

from ..payload import epoch_seconds


def overdue(payload: dict[str, Any], now: float) -> float | None:
    """Seconds by which the job missed its start (``expires_in`` after its enqueue), or None
    when it has not expired."""
    expires_in = payload.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or \
            not math.isfinite(expires_in):
        return None
    enqueued = epoch_seconds(payload.get("enqueued_at"))
    if enqueued is None:
        enqueued = epoch_seconds(payload.get("created_at"))
    if enqueued is None:
        return None
    late = now - (enqueued + expires_in)
    return late if late > 0 else None
