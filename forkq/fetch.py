"""Fetching jobs: reliable (the default) and basic, plus releasing what a thread holds.

Runs in each processor thread; every processor owns one ``Fetcher`` and one Redis connection.

Reliable fetch moves jobs atomically from a queue into a list private to the fetching thread
(``forkq:inflight:<slot>:<thread>``). A thread fetches again only after it finished every job
it holds, so the next fetch acknowledges the whole previous batch by deleting that list. A
process that dies leaves the list behind for recovery (``recovery.py``).

Busy path: one Lua call acknowledges the previous batch, flushes the thread's stat counters
and pops up to ``k`` jobs from the queues in an order computed in Python. ``k`` is adaptive
(``next_batch``): 1 while queues are shallow, doubling while calls come back full, up to
``MAX_BATCH`` and to as many jobs as the thread ran in ``HOARD_SECONDS``, so a thread never
holds more than a few milliseconds of work that another thread or process could run. Fast jobs
get large batches (the round trip is most of their cost); jobs of 5 ms or more go one by one.

Idle path: when the Lua call finds nothing, the thread blocks in ``BLMOVE`` on one queue for
``IDLE_TIMEOUT`` so that a push wakes it at once. Idle threads are spread over the queues
(``ordering.idle_queue``); with more queues than idle threads they rotate, so a push to a queue
nobody is blocked on waits up to ``IDLE_TIMEOUT`` before it is seen.

Basic fetch pops without a private list (Sidekiq's BRPOP): a job in flight lives only in the
process, which still pushes it back on a graceful stop, but loses it on kill -9.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import ordering
from .keys import DAILY_STAT_TTL, Keys

#: most jobs one fetch takes for one thread
MAX_BATCH = 10
#: seconds of work (at the thread's recent pace) a batch may hold
HOARD_SECONDS = 0.005
#: seconds an idle thread blocks on a queue before it looks at all queues again
IDLE_TIMEOUT = 1.0

FETCH_SCRIPT = """
-- KEYS: private list, stat:processed, stat:failed, daily processed, daily failed, queues...
-- ARGV: max jobs, processed delta, failed delta, daily TTL, reliable (1/0)
local reliable = ARGV[5] == '1'
if reliable then redis.call('DEL', KEYS[1]) end
local processed, failed = tonumber(ARGV[2]), tonumber(ARGV[3])
if processed > 0 then
  redis.call('INCRBY', KEYS[2], processed)
  redis.call('INCRBY', KEYS[4], processed)
  redis.call('EXPIRE', KEYS[4], ARGV[4])
end
if failed > 0 then
  redis.call('INCRBY', KEYS[3], failed)
  redis.call('INCRBY', KEYS[5], failed)
  redis.call('EXPIRE', KEYS[5], ARGV[4])
end
local want = tonumber(ARGV[1])
local out = {}
for i = 6, #KEYS do
  local jobs = redis.call('RPOP', KEYS[i], want)
  if jobs then
    if reliable then redis.call('RPUSH', KEYS[1], unpack(jobs)) end
    for _, job in ipairs(jobs) do
      out[#out + 1] = i - 6
      out[#out + 1] = job
    end
    want = want - #jobs
    if want <= 0 then break end
  end
end
return out
"""

RELEASE_SCRIPT = """
-- Acknowledge a thread's finished jobs and put its unstarted ones back at the front of their
-- queues, atomically. KEYS: private list, queue keys (one per job to requeue, in pop order).
-- ARGV: the jobs to requeue; ARGV[#] = job to keep in the private list ('' for none).
for i = #ARGV - 1, 1, -1 do
  redis.call('RPUSH', KEYS[i + 1], ARGV[i])
end
redis.call('DEL', KEYS[1])
if ARGV[#ARGV] ~= '' then redis.call('RPUSH', KEYS[1], ARGV[#ARGV]) end
return #ARGV - 1
"""


def next_batch(current: int, got: int, seconds_per_job: float) -> int:
    """Jobs to ask for next: 1 when the last call came back short, else double, within the
    count and time bounds."""
    if got < current:
        return 1
    by_time = int(HOARD_SECONDS / seconds_per_job) if seconds_per_job > 0 else MAX_BATCH
    return max(1, min(MAX_BATCH, by_time, current * 2))


def idle_round() -> int:
    """The rotation step every thread of every process agrees on: one per ``IDLE_TIMEOUT``.

    Shared, not counted per thread, so that idle threads stay spread over all queues (each
    thread's own count drifts with the jobs it runs, and queues would go unwatched)."""
    return int(time.monotonic() // IDLE_TIMEOUT)


@dataclass(slots=True)
class Fetched:
    queue: str
    text: str


class Counters:
    """Stat deltas a thread accumulates between flushes; only its own thread touches them."""

    __slots__ = ("processed", "failed")

    def __init__(self) -> None:
        self.processed = 0
        self.failed = 0


class Fetcher:
    def __init__(self, redis, keys: Keys, queues, strict: bool, private_key: str,
                 reliable: bool, thread_index: int, idle_plan: tuple[str, ...]) -> None:
        self.redis = redis
        self.keys = keys
        self.queues = queues
        self.strict = strict
        self.private_key = private_key
        self.reliable = reliable
        self.thread_index = thread_index
        self.idle_plan = idle_plan
        self.counters = Counters()
        self.batch = 1
        #: how long the thread's last batch took per job, told by the processor
        self.seconds_per_job = 0.0
        self._fetch = redis.register_script(FETCH_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        #: a connection of its own for the busy path, used without the client's pool, retry
        #: and instrumentation layers, which cost more than the round trip itself
        self._connection = None
        self._day = ("", 0.0)
        self._queue_keys = {q.name: keys.queue(q.name) for q in queues}

    def fetch(self) -> list[Fetched]:
        """Acknowledge what this thread held, then take up to ``batch`` jobs (never blocks)."""
        names = ordering.fetch_order(self.queues, self.strict)
        counters = self.counters
        keys = self._stat_keys() + [self._queue_keys[name] for name in names]
        flat = self._evalsha(keys, (self.batch, counters.processed, counters.failed,
                                    DAILY_STAT_TTL, 1 if self.reliable else 0))
        counters.processed = counters.failed = 0
        jobs = [Fetched(names[int(flat[i])], flat[i + 1]) for i in range(0, len(flat), 2)]
        self.batch = next_batch(self.batch, len(jobs), self.seconds_per_job)
        return jobs

    def _stat_keys(self) -> list[str]:
        now = time.time()
        if now >= self._day[1]:
            day = time.strftime("%Y-%m-%d", time.gmtime(now))
            self._day = (day, (now // 86400 + 1) * 86400)
            self._fixed_keys = [
                self.private_key, self.keys.stat("processed"), self.keys.stat("failed"),
                self.keys.daily_stat("processed", day), self.keys.daily_stat("failed", day)]
        return list(self._fixed_keys)

    def _evalsha(self, keys: list[str], args: tuple) -> list:
        connection = self._connection
        if connection is None:
            connection = self._connection = self.redis.connection_pool.get_connection()
        try:
            connection.send_command("EVALSHA", self._fetch.sha, len(keys), *keys, *args)
            return connection.read_response()
        except NoScriptError:
            self._fetch.sha = self.redis.script_load(FETCH_SCRIPT)
            return self._evalsha(keys, args)
        except (RedisConnectionError, RedisTimeoutError):
            connection.disconnect()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self.redis.connection_pool.release(self._connection)
            self._connection = None

    def wait(self) -> list[Fetched]:
        """Block on one queue until a job arrives or ``IDLE_TIMEOUT`` passes."""
        name = ordering.idle_queue(self.idle_plan, self.thread_index, idle_round())
        source = self._queue_keys[name]
        if self.reliable:
            text = self.redis.blmove(source, self.private_key, IDLE_TIMEOUT, "RIGHT", "RIGHT")
            return [Fetched(name, text)] if text is not None else []
        popped = self.redis.brpop([source], IDLE_TIMEOUT)
        return [Fetched(name, popped[1])] if popped else []

    def flush_stats(self) -> None:
        counters = self.counters
        if not counters.processed:
            return
        day = time.strftime("%Y-%m-%d", time.gmtime())
        pipe = self.redis.pipeline(transaction=True)
        for name, delta in (("processed", counters.processed), ("failed", counters.failed)):
            if delta:
                pipe.incrby(self.keys.stat(name), delta)
                pipe.incrby(self.keys.daily_stat(name, day), delta)
                pipe.expire(self.keys.daily_stat(name, day), DAILY_STAT_TTL)
        pipe.execute()
        counters.processed = counters.failed = 0

    def release(self, unstarted: list[Fetched], keep: Fetched | None = None) -> None:
        """Acknowledge finished jobs; push ``unstarted`` back to the front of their queues."""
        keys = [self.private_key] + [self._queue_keys.get(f.queue) or self.keys.queue(f.queue)
                                     for f in unstarted]
        self._release(keys, [f.text for f in unstarted] + [keep.text if keep else ""])
