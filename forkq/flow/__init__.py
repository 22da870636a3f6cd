"""Flow control around one job run, for the processor thread: expiry, unique-lock release,
over-limit reschedules and time limits. The processor calls these hooks; this module owns what
they do (log lines, metrics, Redis writes), so the processor's loop stays one story.

Runs in a processor thread (one ``Flow`` each, on the thread's connection), except
``time_limit_hit``, which the watchdog thread calls (``timelimit.py``).

Unique locks (``unique.py``) are released before perform for ``unique_until: start``, after
success for ``success``, and when the job dies (``retry.py`` and ``recovery.py``); never on a
retry, a requeue at shutdown, a recovery or an over-limit reschedule.
"""

from __future__ import annotations

import time
from typing import Any

from . import expiry, unique
from ..errors import TimeLimitExceeded
from ..log import logger
from .postpone import Postponer
from .timelimit import clear_pending, limits


class Flow:
    def __init__(self, processor) -> None:
        self.processor = processor
        context = processor.context
        self.keys = context.keys
        self.postponer = Postponer(processor.redis, context.keys.schedule)

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
        self.processor.observer.job_expired(fetched.queue)
        return True

    def release(self, payload: dict[str, Any], event: str) -> None:
        """Free the job's unique lock if it is released at ``event``."""
        if "unique_digest" in payload:
            processor = self.processor
            processor._retrying(lambda: unique.release_at(processor.redis, self.keys, payload,
                                                          event), until_stopped=False)

    def postpone(self, fetched, payload: dict[str, Any], over) -> None:
        """Reschedule an over-limit job for when its limiter can admit it."""
        processor = self.processor
        processor._retrying(lambda: self.postponer.postpone(
            processor.fetcher, fetched.text, payload, time.time() + over.retry_in),
            until_stopped=False)
        logger.info("over limit %s; again in %.1f s", over.limiter, over.retry_in,
                    extra={"ctx": f"class={payload.get('class')} jid={payload.get('jid')}"})
        processor.observer.job_rescheduled(fetched.queue, over.limiter)

    def watch(self, fetched, payload: dict[str, Any], job_class, on_soft=None):
        """Register the job's time limits with the watchdog; None when it has none.

        ``on_soft`` runs at the soft limit in the watchdog thread: by default it raises
        ``SoftTimeLimitExceeded`` in this processor's thread; a coroutine job passes one that
        cancels its task (``loop.call_soon_threadsafe(task.cancel)``)."""
        soft, hard = limits(payload)
        if soft is None and hard is None:
            return None
        processor = self.processor
        on_hard = None
        if hard is not None:
            def on_hard():
                processor.time_limit_hit(fetched, payload, job_class, hard, entry)
        entry = processor.context.watchdog.watch(soft, hard, on_soft or processor.soft_limit_hit,
                                                 on_hard)
        return entry

    def unwatch(self, entry) -> None:
        """The job ended: no callback follows; a soft exception not yet seen is withdrawn."""
        if entry.close():
            clear_pending(self.processor.ident)


def time_limit_error(payload: dict[str, Any], limit: float) -> TimeLimitExceeded:
    return TimeLimitExceeded(f"time limit: ran past its time_limit of {limit:g} s; its worker "
                             f"process was replaced (jid={payload.get('jid')})")
