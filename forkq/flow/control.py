"""The control watch: one thread per worker process reads the paused queues, new cancels and
the queues with priority levels or tenants.

Started and stopped with the worker (``worker/__init__.py``), on a connection of its own.
Every ``INTERVAL`` seconds one pipeline reads the paused set (``pause.py``) into the process's
``PausedView``, and the cancel marks newer than the last it saw and their number (``cancel.py``)
into its ``CancelView``, which tells the runners (processor threads, the coroutine runner) so
that they interrupt a cancelled job they run, and the queues that ever had a priority level
or a tenant (``placement.py``) into its ``PlacementView``, which the fetch and idle waits
read. That is the whole cost of control per process: one round trip twice a second, whatever
the job rate. The per-job path gains no round trip: while the paused or cancel copy holds
something, the fetch script checks both sets itself; while both are empty, it does not look
at them at all (nor at a queue's levels or tenants while the placement copy does not name it).

Redis unavailable: the watch logs nothing of its own (the processors report the outage) and
keeps the last copies, which only steer idle waits and interruptions.
"""

from __future__ import annotations

import threading
import time

import redis as redis_py

from ..log import logger
from .cancel import KEEP, CancelView
from .pause import PausedView
from .placement import PlacementView

#: seconds between two looks: a pause or a cancel reaches every worker within this, plus
#: the running job's next bytecode
INTERVAL = 0.5
#: seconds of marks read again at each look: a mark written with a Redis clock that stepped
#: back a little is still seen
OVERLAP = 2.0


class ControlWatch(threading.Thread):
    def __init__(self, *, redis, keys, paused: PausedView, cancels: CancelView,
                 placement: PlacementView) -> None:
        super().__init__(name="control-watch", daemon=True)
        self.redis = redis
        self.keys = keys
        self.paused = paused
        self.cancels = cancels
        self.placement = placement
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(INTERVAL):
            try:
                self.look()
            except redis_py.RedisError:
                pass  # the copies stay as they are until Redis answers again
            except Exception:
                # A bug must not end the watch: pauses and cancels would go unseen.
                logger.exception("control watch: could not read the paused queues and "
                                 "cancels; trying again in %g s", INTERVAL)

    def look(self) -> None:
        """Read the sets once (also called at start, before the processors fetch)."""
        since = self.cancels.latest - OVERLAP
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(self.keys.paused)
        pipe.zrangebyscore(self.keys.cancels, since if since > 0 else "-inf", "+inf",
                           withscores=True)
        pipe.zcard(self.keys.cancels)
        pipe.smembers(self.keys.prioritized)
        pipe.smembers(self.keys.fair)
        names, marks, kept, prioritized, fair = pipe.execute()
        self.paused.update(names)
        self.placement.update(prioritized, fair)
        now = time.time()
        text_marks = [(_text(jid), at) for jid, at in marks]
        if self.cancels.learn(text_marks, now, kept):
            self.redis.zremrangebyscore(self.keys.cancels, "-inf", now - KEEP)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(INTERVAL * 4)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
