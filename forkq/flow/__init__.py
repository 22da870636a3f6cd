"""Flow control around one job run: expiry, unique-lock release, over-limit reschedules and
time limits. The runners call these hooks; this module owns what they do (log lines, metrics,
Redis writes), so the processor's loop stays one story.

One ``Flow`` per processor thread, on the thread's connection, and one for the coroutine
runner's finisher thread (reschedules only). It is given what it uses (connection, keys,
observer, watchdog, the runner's retry rule), never the runner itself. The time-limit
callbacks a runner passes to ``watch`` run in the watchdog thread (``timelimit.py``); a
coroutine job's limits are awaited in the event loop instead (``within_limits``).

Unique locks (``unique.py``) are released before perform for ``unique_until: start``, after
success for ``success``, and when the job dies (``retry.py`` and ``recovery.py``); never on a
retry, a requeue at shutdown, a recovery or an over-limit reschedule.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import batch_scripts, expiry, unique
from ..errors import SoftTimeLimitExceeded, TimeLimitExceeded
from ..log import job_context, job_extra, logger
from .postpone import Postponer
from .timelimit import clear_pending, limits


class Flow:
    """One per job runner, on its Redis connection: ``attempt(write)`` repeats a write while
    Redis is away; ``source`` is what a postponed job leaves (an object with ``private_key``
    and ``reliable``: the thread's fetcher, or the coroutine runner)."""

    def __init__(self, *, redis, keys, observer, attempt, source, watchdog=None) -> None:
        self.redis = redis
        self.keys = keys
        self.observer = observer
        self.attempt = attempt
        self.source = source
        self.watchdog = watchdog
        self.postponer = Postponer(redis, keys)

    def expired(self, fetched, payload: dict[str, Any]) -> bool:
        """Discard the job if it missed its ``expires_in`` (it stays in the private list, which
        the next fetch acknowledges); True when discarded."""
        late = expiry.overdue(payload, time.time())
        if late is None:
            return False
        logger.warning("expired: class=%s jid=%s in queue %s not started within expires_in "
                       "%s s (%.1f s late); discarded", payload.get("class"), payload.get("jid"),
                       fetched.queue, payload.get("expires_in"), late)
        self.release(payload, "expired")
        if "bid" in payload:  # a batch member that will never run: dead for its batch
            source = self.source
            held = (source.private_key, fetched.text) if source.reliable else ("", "")
            self.attempt(lambda: batch_scripts.expired(self.redis, self.keys, payload, held))
        self.observer.job_expired(fetched.queue)
        return True

    def release(self, payload: dict[str, Any], event: str) -> None:
        """Free the job's unique lock if it is released at ``event``."""
        if "unique_digest" in payload:
            self.attempt(lambda: unique.release_at(self.redis, self.keys, payload, event))

    def postpone(self, fetched, payload: dict[str, Any], over) -> None:
        """Reschedule an over-limit job for when its limiter can admit it."""
        self.attempt(lambda: self.postponer.postpone(
            self.source, fetched.text, payload, time.time() + over.retry_in))
        # a job that stopped itself says why (``iterable.Interrupted``)
        line = getattr(over, "note", None) or \
            f"over limit {over.limiter}; again in {over.retry_in:.1f} s"
        logger.info("%s", line, extra=job_extra(job_context(payload, fetched.queue)))
        self.observer.job_rescheduled(fetched.queue, over.limiter)

    def watch(self, payload: dict[str, Any], on_soft, on_hard):
        """Register the job's time limits with the watchdog; None when it has none.

        ``on_soft()`` runs at the soft limit in the watchdog thread; ``on_hard(limit, entry)``
        at the hard one."""
        soft, hard = limits(payload)
        if soft is None and hard is None:
            return None
        hard_hit = None
        if hard is not None:
            def hard_hit():
                on_hard(hard, entry)
        entry = self.watchdog.watch(soft, hard, on_soft, hard_hit)
        return entry

    def unwatch(self, entry, thread_id: int) -> None:
        """The job ended: no callback follows; a soft exception not yet seen by the thread
        ``thread_id`` is withdrawn."""
        if entry.close():
            clear_pending(thread_id)


def time_limit_error(payload: dict[str, Any], limit: float) -> TimeLimitExceeded:
    return TimeLimitExceeded(f"time limit: ran past its time_limit of {limit:g} s; its worker "
                             f"process was replaced (jid={payload.get('jid')})")


async def within_limits(coroutine, payload: dict[str, Any]) -> Any:
    """Await a coroutine job; past its ``soft_time_limit`` or ``time_limit`` (the sooner) it is
    cancelled (``CancelledError`` inside the coroutine, which may clean up) and fails with
    ``SoftTimeLimitExceeded`` or ``TimeLimitExceeded``. A cancelled coroutine frees the loop,
    so no process is retired for it, unlike a thread stuck in a system call."""
    soft, hard = limits(payload)
    if soft is None and hard is None:
        return await coroutine
    limit, kind = min((value, kind) for value, kind in ((soft, SoftTimeLimitExceeded),
                                                        (hard, TimeLimitExceeded))
                      if value is not None)
    try:
        return await asyncio.wait_for(coroutine, limit)
    except asyncio.TimeoutError:
        name = "soft_time_limit" if kind is SoftTimeLimitExceeded else "time_limit"
        raise kind(f"time limit: the coroutine job ran past its {name} of {limit:g} s and "
                   f"was cancelled (jid={payload.get('jid')})") from None
