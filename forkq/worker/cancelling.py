"""A processor thread's part in cancels (``flow/cancel.py``): whether a job it is about to
start was cancelled, ``Cancelled`` raised in the job it runs, and a job that outlives its
cancel taken from the thread.

Mixed into ``Processor`` (``processor.py``), whose fields it reads (``services``, ``lock``,
``performing``, ``cancel_watch``, ``abandoned``); called by the control watch thread
(``flow/control.py``) and the watchdog thread (``timelimit.py``).
"""

from __future__ import annotations

from typing import Any

from ..errors import Cancelled
from ..flow.cancel import among
from ..flow.timelimit import raise_in
from ..log import job_extra, logger
from .fetch import Fetched
from .outcome import write_cancel_stuck

#: seconds a job interrupted by a cancel has to end before it is handled as stuck (its
#: thread is taken from it and the process replaced, as at a hard time limit)
CANCEL_GRACE = 5.0


class CancelHandling:
    """The cancel steps of ``Processor``."""

    def _cancel_requested(self, fetched: Fetched, payload: dict[str, Any]) -> bool:
        """Whether the job was cancelled before it started: this process knows (no round
        trip), or the fetch flagged it and its mark is there (a round trip, flagged jobs only)."""
        jid = payload.get("jid")
        if self.services.cancels.requested(jid):
            return True
        if not fetched.maybe_cancelled or not isinstance(jid, str):
            return False
        return self._attempt(lambda: self.redis.zscore(self.services.keys.cancels, jid)) \
            is not None

    def cancel_if_running(self, jids: set[str]) -> None:
        """Raise ``Cancelled`` in the job if it is one of ``jids``, once; past ``CANCEL_GRACE``
        a job still running is handled as stuck (``cancel_stuck``)."""
        with self.lock:
            job = self.performing
            if job is None or self.cancel_watch is not None or not among(job.payload, jids):
                return
            raise_in(self.ident, Cancelled)
            self.cancel_watch = self.services.watchdog.watch(
                None, CANCEL_GRACE, None, lambda: self.cancel_stuck(job))

    def cancel_stuck(self, job) -> None:
        """A cancelled job still runs after ``CANCEL_GRACE`` (it caught ``Cancelled``, or is
        blocked in C code): take the batch from this thread, end the job as cancelled, put the
        batch's other jobs back, and retire the process, as at a hard time limit. ``job``: the
        ``processor.Started`` that was running."""
        with self.lock:
            if self.abandoned or self.performing is not job:
                return
            held = self._abandon()
        payload = job.payload
        summary = write_cancel_stuck(self.services, held, payload, job.fetched.queue)
        logger.error("a cancelled job did not end within %g s; %s", CANCEL_GRACE, summary,
                     extra=job_extra(job.context))
        self.services.retire(f"jid={payload.get('jid')} ignored its cancel")
