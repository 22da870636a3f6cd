"""Redis availability as one process sees it: log the outage once, and the recovery once.

Shared by every thread of a worker; each failing call reports here and backs off, so an
outage produces two log lines ("unavailable", "back after 12.3 s"), not one per retry. An
error reply that a wait can cure (a full memory, a replica during a failover, a busy script,
an ACL being fixed) is retried the same way, since giving up would drop the job being written,
but is logged as what it is. A command refused for its data (a key of the wrong type, a TTL out
of range: ``refused_for_data``) would be refused for ever: it is raised to the caller, which
fails or buries that one job instead of holding its thread; a fetch, which holds no job to
fail, waits it out instead, logged once when it starts and once when it ends. Threads fetch
at once, so a reply may arrive after a newer one: a refusal or acceptance from a call that
started before the last change between the two is stale and not logged.
Right after a recovery, each thread's pooled connection from before the outage fails once
(broken pipe) and reconnects: failures within ``STALE_GRACE`` of a recovery are logged only
if they go on past it. Failures are an outage only once they have gone on for
``OUTAGE_GRACE``: when a primary dies, a thread whose reply was already on its way reports a
success just after another thread's failure, and that blip is not an outage of its own.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable

import redis

from ..log import logger

#: seconds between retries while Redis is down, doubling up to the cap
BACKOFF_START = 0.1
BACKOFF_CAP = 5.0
#: seconds after a recovery during which a failure is taken for a stale connection
STALE_GRACE = 2.0
#: seconds failures must go on, without a success between them, to be logged as an outage
OUTAGE_GRACE = 0.5
#: error codes of replies that a wait can cure; any other error reply refuses the data
_PASSING = re.compile(r"(?:^|[\s:-])(OOM|LOADING|BUSY|MASTERDOWN|NOREPLICAS|READONLY|TRYAGAIN|"
                      r"CLUSTERDOWN|NOPERM|NOAUTH|UNBLOCKED)\b")
#: the same, as redis-py names them (it strips the code from the message of these)
_PASSING_TYPES = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError,
                  redis.exceptions.NoPermissionError, redis.exceptions.NoScriptError,
                  redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
                  redis.exceptions.AskError)


class RedisHealth:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.outage_logged = False
        self.recovered_at = float("-inf")
        #: what Redis refuses for its data, where nothing can be failed (``refused``)
        self.refusing: set[str] = set()
        #: when each name last changed between refused and accepted (monotonic)
        self._turned_at: dict[str, float] = {}

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            now = time.monotonic()
            if self.down_since is None:
                self.down_since = now
            if self.outage_logged or now - self.down_since < OUTAGE_GRACE:
                return
            if now - self.recovered_at < STALE_GRACE and now - self.down_since < STALE_GRACE:
                return
            self.outage_logged = True
            if isinstance(exc, redis.ResponseError):
                logger.error("Redis refused a command (%s: %s); retrying with backoff, no "
                             "job is dropped", type(exc).__name__, exc)
            else:
                logger.error("Redis unavailable (%s: %s); retrying with backoff, no job is "
                             "dropped", type(exc).__name__, exc)

    def refused(self, what: str, exc: BaseException, started: float) -> None:
        """Redis refuses ``what`` (a fetch) for its data, and there is no job to fail: logged
        once, by the first thread, until ``accepted``. ``started`` is when the refused call was
        sent (monotonic)."""
        with self._lock:
            if what in self.refusing or not self._turns(what, started):
                return
            self.refusing.add(what)
        logger.error("Redis refuses the %s (%s: %s); retrying with backoff until the key is "
                     "fixed, no job is dropped", what, type(exc).__name__, exc)

    def accepted(self, what: str, started: float) -> None:
        with self._lock:
            if what not in self.refusing or not self._turns(what, started):
                return
            self.refusing.discard(what)
        logger.warning("Redis accepts the %s again", what)

    def _turns(self, what: str, started: float) -> bool:
        """Whether a reply to a call sent at ``started`` may change ``what``'s state: not if
        the state last changed after it was sent, on a reply Redis may have sent later."""
        if started < self._turned_at.get(what, float("-inf")):
            return False
        self._turned_at[what] = time.monotonic()
        return True

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is None:
                return
            if self.outage_logged:
                self.recovered_at = time.monotonic()
                logger.warning("Redis is back after %.1f s", self.recovered_at - self.down_since)
            self.down_since = None
            self.outage_logged = False


def refused_for_data(exc: BaseException) -> bool:
    """True for an error reply that repeating the command will not change (``WRONGTYPE``, ``ERR
    invalid expire time``, a script's error): Redis is up, but refuses what was sent. Connection
    errors, timeouts and replies a wait can cure (``_PASSING``, also inside a script's error
    text) are not."""
    if not isinstance(exc, redis.ResponseError):
        return False
    return not (isinstance(exc, _PASSING_TYPES) or _PASSING.search(str(exc)))


def next_backoff(previous: float) -> float:
    return min(BACKOFF_CAP, max(BACKOFF_START, previous * 2))


def retrying(call: Callable[[], Any], health: RedisHealth,
             give_up: Callable[[float], bool], refusals: str = "") -> Any:
    """Run ``call`` until Redis answers, backing off between tries and reporting each failure
    and the recovery to ``health``. ``give_up(delay)`` waits out the delay and says whether to
    stop trying (the process is stopping): then None is returned, and what the caller held
    stays where recovery finds it. A command ``refused_for_data`` is raised at once: retrying
    it would hold the calling thread for ever, when failing would free it. Given ``refusals``,
    the name of what is called (``"fetch"``: there is no job to fail), it is retried instead,
    logged once (``RedisHealth.refused``) until it is accepted again."""
    delay = 0.0
    while True:
        started = time.monotonic()
        try:
            result = call()
            health.succeeded()
            if refusals and health.refusing:
                health.accepted(refusals, started)
            return result
        except redis.RedisError as exc:
            if not refused_for_data(exc):
                health.failed(exc)
            elif refusals:
                health.refused(refusals, exc, started)
            else:
                health.succeeded()  # Redis answered: it is up
                raise
        delay = next_backoff(delay)
        if give_up(delay):
            return None
