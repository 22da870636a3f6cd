"""Rate and concurrency limits shared by every process on forkq's Redis.

Owns the ``forkq:limiter:*`` keys (``forkq:{l:<name>}:limiter:<kind>`` in the cluster layout:
every script here touches its limiter's one key, so each limiter has a hash tag of its own).
A limiter is made once, at module level, and used around the limited part of a job's
``perform``, in any worker thread, or with ``async with`` in a coroutine job::

    STRIPE = forkq.limiter.concurrent("stripe", 2, lock_timeout=30)

    def perform(self, charge_id):
        with STRIPE:
            charge(charge_id)

    async def perform(self, charge_id):
        async with STRIPE:
            await charge(charge_id)

Kinds: ``concurrent`` (at most ``limit`` holders at once), ``window`` (at most ``limit`` entries
per fixed window of ``seconds``, windows aligned to the epoch) and ``bucket`` (a token bucket of
``limit`` tokens refilled at ``limit`` per ``seconds``). Over the limit, entering raises
``OverLimit`` at once (no thread waits) carrying ``retry_in``: when the limiter can next admit
(the next window, the next token) or, for a concurrent slot, a short jittered wait. The
processor catches it and reschedules the job for then, counting neither a failure nor a retry.

Each check is one Lua script that reads the time from Redis (``TIME``), not from the host:
every host then sees the same window boundaries, token refills and lease expiries whatever
their clock skew, and a host whose clock runs ahead cannot expire another host's lease.

Construction touches nothing but checks its arguments (``ValueError``): every duration is from
0.001 s to ``values.MAX_SECONDS`` (100 years), so that the milliseconds the scripts give Redis
(``PX``, ``PEXPIRE``) are always in its range. ``with`` takes a client from ``forkq.redis()`` (one per thread in
a worker); ``async with`` awaits the same scripts and release on the running event loop's
asyncio client (``forkq.aio.redis()``, opened on first use by the process that runs the loop),
so it never blocks the loop (on a Sentinel URL too, as ``forkq.aio`` follows failovers). ``with``
still works in a coroutine, at the cost of blocking the loop for its round trips. An error while
entering (a Redis error, a cancellation) propagates like any error of the job; for a concurrent
slot it first removes the holder the script may have added before the reply was lost. A Redis
error while removing a holder (leaving, or after such an entry) is logged as a warning and not
raised, and the lease frees the slot. With ``async with``, that removal and the release run in a
shielded task: cancelling the coroutine again does not cut them. A concurrent slot is left by
the thread or asyncio task that entered it (each keeps its own stack of holders), so coroutines
interleaving on the loop's thread each release their own; enter and leave it in the same thread
or task.

Failure rules (kill -9): a concurrent slot is a lease (a zset member scored by its expiry). A slot
comes back only ``lock_timeout`` seconds after it was entered when its holder is not removed: the
process was killed (or its event loop closed) before the removal ran, the removal failed on a
Redis error (logged), or the removal after a failed entry reached Redis before that entry's
script did (the failed connection is closed, so the two go on different ones). ``lock_timeout``
must therefore exceed the longest run of the limited block, or a slow holder's slot is handed on
while it still runs. Window and bucket keys expire by themselves when idle; nothing is held.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import uuid

import redis as redis_py

from .connection.scripts import Script
from .connection.source import default_source
from .log import logger
from .values import positive_seconds

#: seconds a concurrent slot is held at most when its holder never leaves (Sidekiq's default)
LOCK_TIMEOUT = 30.0
#: range of seconds an over-limit concurrent job waits before it is tried again
CONCURRENT_RETRY = (1.0, 5.0)

_NOW_MS = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
"""

# KEYS: zset holder -> lease expiry (ms). ARGV: holder, limit, lock timeout ms.
CONCURRENT_SCRIPT = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: hash {window, count}. ARGV: limit, window ms. Returns ms until admitted (0: admitted).
WINDOW_SCRIPT = _NOW_MS + """
local size = tonumber(ARGV[2])
local window = math.floor(now / size)
local state = redis.call('HMGET', KEYS[1], 'window', 'count')
local count = 0
if tonumber(state[1]) == window then count = tonumber(state[2]) end
local left = (window + 1) * size - now
if count >= tonumber(ARGV[1]) then return left end
redis.call('HSET', KEYS[1], 'window', window, 'count', count + 1)
redis.call('PEXPIRE', KEYS[1], left)
return 0
"""

# KEYS: hash {tokens, at}. ARGV: capacity, ms to refill the whole bucket.
# Returns ms until the next token (0: admitted). A missing key is a full bucket.
BUCKET_SCRIPT = _NOW_MS + """
local capacity = tonumber(ARGV[1])
local per_token = tonumber(ARGV[2]) / capacity
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = capacity
if state[1] then
  tokens = math.min(capacity, tonumber(state[1]) + (now - tonumber(state[2])) / per_token)
end
if tokens < 1 then return math.ceil((1 - tokens) * per_token) end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) * per_token) + 1)
return 0
"""


class OverLimit(BaseException):
    """Raised on entering a limiter that is over its limit; the job is rescheduled.

    A BaseException, like ``forkq.Shutdown``: it is a message to the processor, not an error of
    the job, so a job's own ``except Exception`` around the limited call must not swallow it and
    turn a postponed job into a silent success. Catch ``OverLimit`` by name to handle it."""

    def __init__(self, limiter: str, retry_in: float) -> None:
        super().__init__(f"limiter {limiter!r} is over its limit; retry in {retry_in:.3f} s")
        self.limiter = limiter
        #: seconds after which the limiter can next admit the job
        self.retry_in = retry_in


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a limiter name must be a non-empty string, not {name!r}")
    return name


def _check_limit(name: str, limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limiter {name!r}: limit must be a whole number >= 1, not {limit!r}")
    return limit


def _check_seconds(name: str, what: str, seconds: object) -> float:
    return positive_seconds(seconds, f"limiter {name!r}: {what}", ValueError, minimum=0.001)


def _check_retry_wait(name: str, retry_wait: object) -> tuple[float, float]:
    try:
        low, high = (_check_seconds(name, "retry_wait", value) for value in retry_wait)
    except (TypeError, ValueError):
        low = high = -1.0
    if not 0 < low <= high:
        raise ValueError(f"limiter {name!r}: retry_wait must be (shortest, longest) seconds, "
                         f"not {retry_wait!r}")
    return low, high


class _Limiter:
    kind = ""
    source = ""
    script = Script("")

    def __init_subclass__(cls) -> None:
        cls.script = Script(cls.source)

    def __init__(self, name: str, limit: int) -> None:
        self.name = _check_name(name)
        self.limit = _check_limit(name, limit)

    def _key(self) -> str:
        return default_source().keys.limiter(self.kind, self.name)

    def _run(self, *args) -> int:
        """Run this kind's script on the calling thread's client; its integer reply.

        By sha (``connection/scripts.py``); no client is kept, so nothing crosses a fork."""
        return int(self.script(default_source().redis, [self._key()], args))

    async def _arun(self, *args) -> int:
        """``_run`` awaited on the running event loop's client (``_loop_redis``)."""
        return int(await self.script.call_async(self._loop_redis(), [self._key()], args))

    def _loop_redis(self):
        """The running event loop's asyncio client (``connection.aio.redis()``: one a loop, made
        in the process that runs the loop, so none crosses a fork)."""
        from .connection import aio  # redis.asyncio is loaded only by coroutine code

        return aio.redis()

    def __exit__(self, *exc_info) -> None:
        return None

    async def __aexit__(self, *exc_info) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} limit={self.limit}>"


class ConcurrentLimiter(_Limiter):
    kind = "concurrent"
    source = CONCURRENT_SCRIPT

    def __init__(self, name: str, limit: int, lock_timeout: float = LOCK_TIMEOUT,
                 retry_wait: tuple[float, float] = CONCURRENT_RETRY) -> None:
        super().__init__(name, limit)
        self.lock_timeout = _check_seconds(name, "lock_timeout", lock_timeout)
        self.retry_wait = _check_retry_wait(name, retry_wait)
        # Each thread and each asyncio task sees its own stack of the holders it entered (a
        # task starts with a copy of its creator's context, a thread with its own), so a holder
        # left is the one that same thread or task entered last, whatever other coroutines on
        # the loop's thread do meanwhile. Immutable: a copied context cannot change another's.
        self._holders: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
            f"forkq limiter {name!r} holders", default=())

    def __enter__(self) -> "ConcurrentLimiter":
        holder = uuid.uuid4().hex
        try:
            admitted = self._run(holder, self.limit, self._lease_ms())
        except BaseException:
            # the script may have run and added the holder before the reply was lost
            self._remove(holder)
            raise
        self._admitted(holder, admitted)
        return self

    async def __aenter__(self) -> "ConcurrentLimiter":
        holder = uuid.uuid4().hex
        try:
            admitted = await self._arun(holder, self.limit, self._lease_ms())
        except BaseException:
            # cancelled or failed awaiting the reply: the script may have run all the same
            try:
                await asyncio.shield(self._aremove(holder))
            except asyncio.CancelledError:
                pass  # cancelled again: the shielded removal runs on
            raise
        self._admitted(holder, admitted)
        return self

    def _lease_ms(self) -> int:
        return int(self.lock_timeout * 1000)

    def _admitted(self, holder: str, admitted: int) -> None:
        if not admitted:
            raise OverLimit(self.name, random.uniform(*self.retry_wait))
        self._holders.set((*self._holders.get(), holder))

    def _leaving(self) -> str:
        """The holder this thread or task entered last, taken off its stack."""
        holders = self._holders.get()
        if not holders:
            raise RuntimeError(f"limiter {self.name!r}: left without being entered in this "
                               f"thread or task; enter and leave it in the same one")
        self._holders.set(holders[:-1])
        return holders[-1]

    def __exit__(self, *exc_info) -> None:
        self._remove(self._leaving())

    async def __aexit__(self, *exc_info) -> None:
        # shielded: a task cancelled while leaving still frees its slot
        await asyncio.shield(self._aremove(self._leaving()))

    def _remove(self, holder: str) -> None:
        try:
            default_source().redis.zrem(self._key(), holder)
        except redis_py.RedisError as exc:
            self._not_removed(exc)

    async def _aremove(self, holder: str) -> None:
        try:
            await self._loop_redis().zrem(self._key(), holder)
        except redis_py.RedisError as exc:
            self._not_removed(exc)

    def _not_removed(self, exc: Exception) -> None:
        # never raised: after the block ran, failing the job would run it twice; after a failed
        # entry, the entry's own error is the one to report. The lease frees the slot.
        logger.warning("limiter %r: slot not released (%s); it frees itself within "
                       "lock_timeout (%s s)", self.name, exc, self.lock_timeout)


class _TimedLimiter(_Limiter):
    """A limiter whose script answers with the milliseconds until it can admit (0: admitted)."""

    def __init__(self, name: str, limit: int, seconds: float) -> None:
        super().__init__(name, limit)
        self.seconds = _check_seconds(name, "seconds", seconds)

    def __enter__(self):
        self._admitted(self._run(self.limit, int(self.seconds * 1000)))
        return self

    async def __aenter__(self):
        self._admitted(await self._arun(self.limit, int(self.seconds * 1000)))
        return self

    def _admitted(self, wait_ms: int) -> None:
        if wait_ms:
            raise OverLimit(self.name, wait_ms / 1000)


class WindowLimiter(_TimedLimiter):
    kind = "window"
    source = WINDOW_SCRIPT


class BucketLimiter(_TimedLimiter):
    kind = "bucket"
    source = BUCKET_SCRIPT


def concurrent(name: str, limit: int, lock_timeout: float = LOCK_TIMEOUT,
               retry_wait: tuple[float, float] = CONCURRENT_RETRY) -> ConcurrentLimiter:
    """At most ``limit`` holders at once across all hosts; see the module docstring."""
    return ConcurrentLimiter(name, limit, lock_timeout, retry_wait)


def window(name: str, limit: int, seconds: float) -> WindowLimiter:
    """At most ``limit`` entries per window of ``seconds``, windows aligned to the epoch."""
    return WindowLimiter(name, limit, seconds)


def bucket(name: str, limit: int, seconds: float) -> BucketLimiter:
    """A bucket of ``limit`` tokens refilled at ``limit`` per ``seconds``, one per entry."""
    return BucketLimiter(name, limit, seconds)
