"""Fetching jobs: reliable (the default) and basic (``FetchMode``), plus releasing what a
thread holds.

Runs in each processor thread; every processor owns one ``Fetcher`` and one Redis connection,
given the queues and their order (``ordering.QueueOrder``), the mode, its private lists, its
index and the idle plan, all keyword arguments.

Reliable fetch moves jobs atomically from a queue into a list private to the fetching thread.
A thread fetches again only after it finished every job it holds, so the next fetch
acknowledges the whole previous batch by deleting that list. A process that dies leaves the
list behind for recovery (``recovery.py``).

Each thread has *two* private lists (``forkq:inflight:<slot>:<thread>`` and ``...:alt``) and
uses them in turn: a fetch deletes the list holding the finished batch and fills the other.
So when a call fails without a reply (Redis restarted, connection cut) the thread still knows
which list holds what: the old one only finished jobs, the new one only jobs never started,
whether or not the call ran. Until a reply arrives the lists are *unknown*; the next call
then *adopts* them (``adopt``): it acknowledges the old list and takes over the new one's jobs
as its batch, instead of deleting anything blindly. A blocking ``BLMOVE`` that fails is
adopted the same way. Releasing pushes back only the jobs it removes from the private list,
so repeating a release whose reply was lost requeues nothing twice; until it succeeds the
list counts as unknown, and what it still holds is pushed back with the rest.

Replies are read as bytes and decoded job by job: a payload that is not UTF-8 is handed over
as ``bytes`` (and buried by the processor) instead of failing the whole batch's reply.

Busy path: one Lua call acknowledges the previous batch, flushes the thread's stat counters
and pops up to ``k`` jobs from the queues in an order computed in Python (with more than
``ordering.HEAD`` queues, from the first of that order, and from all only when those held
none: a second call). ``k`` is adaptive
(``next_batch``): 1 while queues are shallow, doubling while calls come back full, up to
``MAX_BATCH`` and to as many jobs as the thread ran in ``HOARD_SECONDS``, so a thread never
holds more than about 20 ms of work that another thread or process could run, and a process
killed with -9 runs again at most that much finished work per thread. Fast jobs get large
batches (the round trip is most of their cost); jobs of 20 ms or more go one by one. The pace
is the thread's wall time per job, which counts its waits for the GIL: with ten busy threads a
1 ms job takes several ms of a thread's time. At 5 ms, one process of ten threads running
one-``INCR`` jobs kept its batches near 2 and spent 0.4 fetch round trips per job; at 20 ms
they reach ``MAX_BATCH`` (0.1 per job), for about 20 % less worker CPU and 40 % less Redis CPU
per job.

The stat counters (processed, failed) are zeroed only once the busy path's reply arrives. A
call that fails without a reply may or may not have run, and nothing tells which (``adopt``
flushes no counters): the counts are kept and sent with the next call, so a call that ran but
lost its reply counts that batch's jobs twice in ``stat:processed``/``stat:failed`` (and the
daily keys). Zeroing them before the call would instead lose them whenever the call did not
run, which is the usual case while Redis is away; a rare over-count is the lesser error.

Idle path: when the Lua call finds nothing, the thread blocks in ``BLMOVE`` on one queue for
``IDLE_TIMEOUT`` so that a push wakes it at once. Idle threads are spread over the queues
(``ordering.idle_queue``); with more queues than idle threads they rotate, so a push to a queue
nobody is blocked on waits up to ``IDLE_TIMEOUT`` before it is seen.

Basic fetch pops without a private list (Sidekiq's BRPOP): a job in flight lives only in the
process, which still pushes it back on a graceful stop, but loses it on kill -9, and a fetch
whose reply is lost (Redis restarted, connection cut) loses the jobs it popped.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass

from redis.client import NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import ordering
from ..connection import call_replicated
from ..connection.scripts import Script
from ..flow import placement
from ..flow.cancel import CancelView
from ..flow.pause import PausedView
from ..flow.fairlimit import FAIR_LIMIT_LUA, LOOK_AHEAD
from ..flow.placement import MARK_LUA, PlacementView
from ..keys import DAILY_STAT_TTL, STATS_LUA, Keys

#: most jobs one fetch takes for one thread
MAX_BATCH = 10
#: seconds of work (at the thread's recent pace) a batch may hold
HOARD_SECONDS = 0.02
#: seconds an idle thread blocks on a queue before it looks at all queues again
IDLE_TIMEOUT = 1.0

#: Lua: how the fetch scripts (this module's and ``clusterfetch.py``'s) take jobs from a
#: queue's places (``flow/placement.py``). The including script defines first: ``reliable``,
#: ``want`` (jobs still wanted), ``out`` (the reply: pairs of queue index and job), ``cancels``
#: (whether to look for cancel marks in ``KEYS[8]``), ``record`` (the ``fair_limit`` counts'
#: record), ``root`` (``Keys.root``) and ``pop_count`` (pop a list's jobs with one ``RPOP``
#: and a count, for servers that seek from the tail); ``KEYS[2]`` is the private list to fill.
TAKE_LUA = f"local LOOK_AHEAD = {LOOK_AHEAD}\n" + """
-- Pop up to want jobs from the right of list key; returns how many it took. Unless
-- pop_count, one RPOP a job, not RPOP with a count: Redis 6.2 walks the list from its head
-- for a count, 450 us a call on a queue of 1,000,000 jobs against 2 (7.0 seeks from the tail).
local function take(key, index)
  local jobs = {}
  if pop_count then
    jobs = redis.call('RPOP', key, want) or jobs
  else
    for _ = 1, want do
      local job = redis.call('RPOP', key)
      if not job then break end
      jobs[#jobs + 1] = job
    end
  end
  if #jobs == 0 then return 0 end
  if reliable then redis.call('RPUSH', KEYS[2], unpack(jobs)) end
  for _, job in ipairs(jobs) do
    local shown = index
    if cancels then
      -- every "jid":"..." of the text (args may hold one too); plain finds are cheap
      local at = string.find(job, '"jid":', 1, true)
      while at do
        local jid = string.match(job, '^%s*"([^"]+)"', at + 6)
        if jid and redis.call('ZSCORE', KEYS[8], jid) then shown = -1 - index; break end
        at = string.find(job, '"jid":', at + 6, true)
      end
    end
    out[#out + 1] = shown
    out[#out + 1] = job
  end
  want = want - #jobs
  return #jobs
end

-- How many jobs a tenant may be given now (its head job's fair_limit minus its jobs held):
-- nil when that job has no limit.
local function room(list, tenant, running)
  if tenant == '' then return nil end
  local limit = limit_of(redis.call('LINDEX', list, -1))
  if not limit then return nil end
  return limit - (tonumber(redis.call('HGET', running, tenant)) or 0)
end

-- The tenant to serve: the oldest turn not at its limit among the first LOOK_AHEAD (a tenant
-- at its limit keeps its turn), with its list, its room and whether another tenant waits.
local function next_tenant(key, name, turns, running)
  local heads = redis.call('ZRANGE', turns, 0, 1)
  local others = heads[2] ~= nil
  for pass = 1, 2 do
    for _, tenant in ipairs(heads) do
      local list = tenant == '' and key or tenant_key(root, name, tenant)
      local free = room(list, tenant, running)
      if free == nil or free > 0 then return tenant, list, free, others end
    end
    if pass == 2 or not others then return nil end
    heads = redis.call('ZRANGE', turns, 2, LOOK_AHEAD + 1)
  end
end

-- A queue with tenants (flow/placement.py): one job from the tenant whose turn is oldest,
-- which then gets the next turn, or leaves when its list is empty; queue:<name> takes its
-- turn as the tenant ''. A few commands a job, whatever the number of tenants; a tenant at
-- its fair_limit (flow/fairlimit.py) is passed over, up to LOOK_AHEAD of them.
local function take_fair(key, name, index)
  local turns = queue_key(root, name, 'turns')
  local running = queue_key(root, name, 'fair-running')
  if redis.call('EXISTS', key) == 1 then redis.call('ZADD', turns, 'NX', 0, '') end
  while want > 0 do
    local tenant, list, free, others = next_tenant(key, name, turns, running)
    if tenant == nil then return end
    -- one job a turn; a tenant alone in the queue (plain jobs alone, too) takes the batch,
    -- unless it is limited: then one job a call, each checked against its own limit
    local asked = want
    if others or free then want = 1 end
    local got = take(list, index)
    if free and got > 0 then count_held(record, root, name, tenant, got) end
    want = asked - got
    if got == 0 or redis.call('EXISTS', list) == 0 then
      redis.call('ZREM', turns, tenant)
    else
      redis.call('ZADD', turns, 'XX', redis.call('INCR', queue_key(root, name, 'turn')), tenant)
    end
  end
end

-- A queue with levels: the highest level first; priority 0 (queue:<name>, or the tenants'
-- turns) between the levels above 0 and those below. A level found empty leaves the sorted
-- set, so each call looks at a few levels at most.
local function take_levels(key, name, index, fair)
  local levels_key = queue_key(root, name, 'levels')
  local plain = true
  while want > 0 do
    local top = redis.call('ZREVRANGE', levels_key, 0, 0)[1]
    if plain and (top == nil or tonumber(top) < 0) then
      if fair then take_fair(key, name, index) else take(key, index) end
      plain = false
    elseif top == nil then
      return
    else
      local asked = want
      if take(queue_key(root, name, 'level:' .. top), index) < asked then
        redis.call('ZREM', levels_key, top)
      end
    end
  end
end
"""

FETCH_SCRIPT = STATS_LUA + FAIR_LIMIT_LUA + """
-- KEYS: private list to acknowledge, private list to fill, stat:processed, stat:failed,
--       daily processed, daily failed, paused set, cancels zset, queues...
-- ARGV: max jobs, processed delta, failed delta, daily TTL, reliable (1/0), length of the
--       queue keys' prefix (a queue key minus it is the name the paused set holds), check
--       (1/0: the process knows of a paused queue or a cancel mark; see Fetcher.fetch),
--       places ('' when no queue of the process ever had a priority level or a tenant, else
--       a digit per queue key: +1 look at its levels, +2 at its tenants' turns), the
--       namespace prefix of forkq's keys
-- Returns pairs (queue index, job); the index is -1 - index for a job that may have been
-- cancelled (a "jid": "..." in its text is in the cancels zset): the processor checks.
local reliable = ARGV[5] == '1'
if reliable then redis.call('DEL', KEYS[1]) end
local places, root = ARGV[8], ARGV[9]
-- the counts of the acknowledged list go back (in basic mode the thread's one list: what it
-- took last time has ended); a process none of whose queues has tenants counted nothing
if places ~= '' then give_back(KEYS[1] .. ':fair', root) end
-- where this call's counts go: the list it fills (basic mode: the one it gives back next call)
local record = (reliable and KEYS[2] or KEYS[1]) .. ':fair'
count_stats(3, ARGV[2], ARGV[3], ARGV[4])
local paused, cancels = false, false
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[7], KEYS[8]) > 0 then
  paused = redis.call('EXISTS', KEYS[7]) == 1
  cancels = redis.call('EXISTS', KEYS[8]) == 1
end
local prefix = tonumber(ARGV[6])
local want = tonumber(ARGV[1])
local out = {}
local pop_count = false

""" + TAKE_LUA + """
for i = 9, #KEYS do
  local place = places ~= '' and string.byte(places, i - 8) - 48 or 0
  local name = (paused or place > 0) and string.sub(KEYS[i], prefix + 1)
  if not (paused and redis.call('SISMEMBER', KEYS[7], name) == 1) then
    if place % 2 == 1 then
      take_levels(KEYS[i], name, i - 9, place >= 2)
    elseif place >= 2 then
      take_fair(KEYS[i], name, i - 9)
    else
      take(KEYS[i], i - 9)
    end
  end
  if want <= 0 then break end
end
return out
"""

ADOPT_SCRIPT = FAIR_LIMIT_LUA + """
-- After a call whose reply was lost: acknowledge the list it was to empty, return the other.
-- KEYS: list holding only finished jobs, list holding only jobs never started. ARGV: root.
redis.call('DEL', KEYS[1])
give_back(KEYS[1] .. ':fair', ARGV[1])
return redis.call('LRANGE', KEYS[2], 0, -1)
"""

RELEASE_SCRIPT = MARK_LUA + FAIR_LIMIT_LUA + """
-- Acknowledge a thread's finished jobs and put its unstarted ones back at the front of their
-- queues, atomically and idempotently. KEYS: private list, then per job (in pop order) the
-- keys of flow/placement.py's front, padded to three. ARGV: per job its text and front's
-- score, member and queue name ('' for queue:<name>); then the job to keep in the private
-- list ('' for none), its queue and its tenant ('' for none); then root; then reliable
-- (1/0): reliable requeues only what it removes from the private list. The list's counts
-- (flow/fairlimit.py) go back, but for the kept job's.
local n = (#ARGV - 5) / 4
local reliable = ARGV[#ARGV] == '1'
local keep, root = ARGV[#ARGV - 4], ARGV[#ARGV - 1]
give_back(KEYS[1] .. ':fair', root)
if ARGV[#ARGV - 2] ~= '' and limit_of(keep) then
  count_held(KEYS[1] .. ':fair', root, ARGV[#ARGV - 3], ARGV[#ARGV - 2], 1)
end
local pushed = 0
for i = n, 1, -1 do
  local a, k = 4 * i - 3, 3 * i - 1
  if not reliable or redis.call('LREM', KEYS[1], 1, ARGV[a]) == 1 then
    redis.call('RPUSH', KEYS[k], ARGV[a])
    if ARGV[a + 3] ~= '' then mark(KEYS[k + 1], KEYS[k + 2], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]) end
    pushed = pushed + 1
  end
end
if reliable then
  redis.call('DEL', KEYS[1])
  if keep ~= '' then redis.call('RPUSH', KEYS[1], keep) end
end
return pushed
"""
FETCH, ADOPT, RELEASE = Script(FETCH_SCRIPT), Script(ADOPT_SCRIPT), Script(RELEASE_SCRIPT)
COUNT_STATS = Script(STATS_LUA + "count_stats(1, ARGV[1], ARGV[2], ARGV[3])")


class FetchMode(enum.Enum):
    """The config's ``fetch``: ``reliable`` keeps fetched jobs in a private list until they
    finish; ``basic`` pops them (Sidekiq's BRPOP), and kill -9 loses the jobs in flight."""

    RELIABLE = "reliable"
    BASIC = "basic"


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
    #: the job's JSON text; the raw ``bytes`` when they are not valid UTF-8
    text: str | bytes
    #: the fetch script found a jid of its text among the cancels (``flow/cancel.py``)
    maybe_cancelled: bool = False
    #: the list it came from when not ``queue``'s own: a shard of it (``flow/shards.py``),
    #: where a put-back returns it
    home: str | None = None

    @property
    def origin(self) -> str:
        """The queue or shard whose lists hold it: its private lists, counters and put-backs
        (one hash slot in the cluster layout)."""
        return self.home or self.queue


def decoded(raw: bytes) -> str | bytes:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def queue_of(text: str | bytes) -> str:
    """The queue a job's text names; ``default`` when it names none or is not a JSON object.

    Bytes that are not UTF-8 are read with replacement characters, only to route them."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    try:
        queue = json.loads(text).get("queue")
    except (ValueError, AttributeError, RecursionError):
        return "default"
    return queue if isinstance(queue, str) and queue else "default"


class Counters:
    """Stat deltas a thread accumulates between flushes. Owned by its processor thread; the
    manager takes them (``Fetcher.held``) only from a processor it abandoned."""

    __slots__ = ("processed", "failed")

    def __init__(self) -> None:
        self.processed = 0
        self.failed = 0


@dataclass
class Held:
    """What an abandoned processor held, handed to the manager to put back (``bulk_requeue``).

    ``known`` is false when the thread's last call lost its reply, or when it was caught
    between calls (no job running: it may have just fetched a batch it has not recorded yet).
    Its lists are then left whole for recovery, which the next process in the slot runs at
    boot: finished jobs may run again, none is lost."""

    lists: tuple[str, str]
    #: index in ``lists`` of the list holding ``jobs``
    side: int
    #: jobs not finished, the running one first, in fetch order
    jobs: list[Fetched]
    reliable: bool
    known: bool
    processed: int
    failed: int


class Fetcher:
    def __init__(self, redis, keys: Keys, *, queues: ordering.QueueOrder, mode: FetchMode,
                 lists: tuple[str, str], thread_index: int, idle_plan: tuple[str, ...],
                 paused: PausedView, cancels: CancelView, placement: PlacementView) -> None:
        self.redis = redis
        self.keys = keys
        self.queues = queues
        self.mode = mode
        self.lists = lists
        #: index in ``lists`` of the list holding the thread's current batch
        self.side = 0
        #: a call changing the lists failed without a reply: ``adopt`` before anything else
        self.unknown = False
        #: the mode as the scripts' flag (``postpone.Postponer`` reads it too)
        self.reliable = mode is FetchMode.RELIABLE
        self.thread_index = thread_index
        self.idle_plan = idle_plan
        #: the process's copies of the paused queues (for the idle wait) and of the cancels;
        #: while either holds something, the fetch script reads both sets itself
        self.paused = paused
        self.cancels = cancels
        #: the process's copy of the queues that ever had priority levels or tenants: the
        #: fetch script looks at those places only, and idle threads wait on their bells
        self.placement = placement
        #: a fetch looked at levels or tenants once: every later fetch gives back the counts
        #: its thread held (``flow/fairlimit.py``), even when the process knows of none any more
        self._placed = False
        self.counters = Counters()
        self.batch = 1
        #: how long the thread's last batch took per job, told by the processor
        self.seconds_per_job = 0.0
        #: a connection of its own for the busy path, used without the client's pool, retry
        #: and instrumentation layers, which cost more than the round trip itself
        self._connection = None
        self._day = ("", 0.0)
        self._stat_key_list: list[str] = []
        # Encoded once: with many queues a fetch names them all (``ordering.QueueOrder.sweep``),
        # and redis-py encodes a str argument on every call.
        self._queue_keys = {name: keys.queue(name).encode() for name in queues.names()}
        self._control_keys = [keys.paused, keys.cancels]
        self._prefix = len(keys.queue(""))

    @property
    def private_key(self) -> str:
        """The private list holding the current batch."""
        return self.lists[self.side]

    def fetch(self) -> list[Fetched]:
        """Acknowledge what this thread held, then take up to ``batch`` jobs (never blocks).

        After a failed call, returns instead the jobs that call may have taken (``adopt``)."""
        if self.unknown:
            return self.adopt()
        jobs = self._take(self.queues.order())
        if not jobs:
            wider = self.queues.sweep()  # only with many queues: see ordering.HEAD
            jobs = self._take(wider) if wider else jobs
        self.batch = next_batch(self.batch, len(jobs), self.seconds_per_job)
        return jobs

    def _take(self, names: list[str]) -> list[Fetched]:
        """One fetch call over the queues ``names``, in that order."""
        counters = self.counters
        ack, fill = self.lists[self.side], self.lists[1 - self.side]
        keys = [ack, fill, *self._stat_keys(), *self._control_keys,
                *[self._queue_keys[name] for name in names]]
        if self.reliable:
            self.unknown, self.side = True, 1 - self.side
        # Checked in Redis only while this process knows of a pause or a mark (its control
        # watch looks twice a second): otherwise the script does what it did before pausing
        # and cancelling existed (bench/fetch_pause.py).
        check = 1 if self.paused.names or self.cancels.marked else 0
        places = self.placement.flags(names)
        if not places and self._placed:
            places = "0" * len(names)  # all plain now (a cleared queue left the fair set)
        self._placed = bool(places)
        flat = self._evalsha(keys, (self.batch, counters.processed, counters.failed,
                                    DAILY_STAT_TTL, 1 if self.reliable else 0, self._prefix,
                                    check, places, self.keys.root))
        counters.processed = counters.failed = 0  # only now: see the module docstring
        try:
            jobs = [Fetched(names[flat[i]], flat[i + 1].decode()) for i in range(0, len(flat), 2)
                    if flat[i] >= 0]
        except UnicodeDecodeError:
            jobs = [Fetched(names[flat[i]], decoded(flat[i + 1])) for i in range(0, len(flat), 2)
                    if flat[i] >= 0]
        if len(jobs) * 2 < len(flat):
            jobs = [Fetched(names[index if index >= 0 else -1 - index], decoded(raw), index < 0)
                    for index, raw in zip(flat[::2], flat[1::2])]
        self.unknown = False
        return jobs

    def adopt(self) -> list[Fetched]:
        """Settle the lists after a call that lost its reply: acknowledge the list of finished
        jobs, return the other list's jobs (never started) as the thread's batch.

        A job's queue is then the one its payload names (the fetch reply that said where it
        came from was lost), as for retries and recovery."""
        keys = [self.lists[1 - self.side], self.lists[self.side]]
        texts = [decoded(raw) for raw in ADOPT(self.redis, keys, [self.keys.root], raw=True)]
        jobs = [Fetched(queue_of(text), text) for text in texts]
        self.unknown = False
        return jobs

    def _stat_keys(self) -> list[str]:
        now = time.time()
        if now >= self._day[1]:
            day = time.strftime("%Y-%m-%d", time.gmtime(now))
            self._day = (day, (now // 86400 + 1) * 86400)
            self._stat_key_list = self.keys.stat_keys(day)
        return self._stat_key_list

    def _evalsha(self, keys: list[str], args: tuple) -> list:
        connection = self._connection
        if connection is None:
            connection = self._connection = self.redis.connection_pool.get_connection()
        try:
            return FETCH.send_by(lambda command: call_replicated(
                self.redis, connection, *command, disable_decoding=True), FETCH.command(keys, args))
        except (RedisConnectionError, RedisTimeoutError):
            connection.disconnect()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self.redis.connection_pool.release(self._connection)
            self._connection = None

    def wait(self, quiet) -> list[Fetched]:
        """Block on one queue until a job arrives or ``IDLE_TIMEOUT`` passes; with every queue
        paused, just wait (on the ``quiet`` event, which ends the wait at shutdown).

        Called again after a wait that lost its reply (the processor retries the call), returns
        instead the job that wait may have moved (``adopt``): a new ``BLMOVE`` would add a
        second job to the private list and return only that one, and the next fetch would
        acknowledge the first unrun."""
        if self.unknown:
            return self.adopt()
        paused = self.paused.names
        plan = tuple(q for q in self.idle_plan if q not in paused) if paused else self.idle_plan
        if not plan:
            quiet.wait(IDLE_TIMEOUT)
            return []
        step = idle_round()
        name = ordering.idle_queue(plan, self.thread_index, step)
        if name in self.placement.names and (self.thread_index + step) % 2:
            self._ring_wait(name)
            return []
        jobs = self._block_on(name)
        if jobs and name in self.paused.names:
            # Paused while this thread was blocked on it: not started, put back in front.
            self.release(jobs)
            return []
        return jobs

    def _ring_wait(self, name: str) -> None:
        """Wait for a push to one of the queue's levels or tenants (its bell), which the next
        fetch then takes in order. Half the idle turns on such a queue go here, half to
        ``queue:<name>``, which only a plain push wakes (one BLMOVE cannot watch both)."""
        self.redis.execute_command("BRPOP", self.keys.bell(name), IDLE_TIMEOUT)

    def _block_on(self, name: str) -> list[Fetched]:
        source = self._queue_keys[name]
        if self.reliable:
            self.unknown = True
            raw = self.redis.execute_command("BLMOVE", source, self.private_key, "RIGHT",
                                             "RIGHT", IDLE_TIMEOUT, **{NEVER_DECODE: True})
            jobs = [Fetched(name, decoded(raw))] if raw is not None else []
            self.unknown = False
            return jobs
        popped = self.redis.execute_command("BRPOP", source, IDLE_TIMEOUT, **{NEVER_DECODE: True})
        return [Fetched(name, decoded(popped[1]))] if popped else []

    def flush_stats(self) -> None:
        counters = self.counters
        flush_counters(self.redis, self.keys, counters.processed, counters.failed)
        counters.processed = counters.failed = 0

    def release(self, unstarted: list[Fetched], keep: Fetched | None = None) -> int:
        """Acknowledge finished jobs; push ``unstarted`` back to the front of their queues.

        When a call lost its reply, what the private list holds is adopted and pushed back
        too (a release that lost its reply may have run or not: the jobs it would have
        acknowledged may run again, none is lost)."""
        if self.unknown:
            adopted = [job for job in self.adopt() if keep is None or job.text != keep.text]
            unstarted = adopted + unstarted
        self.unknown = self.reliable
        pushed = release(self.redis, self.keys, self.private_key, unstarted, keep,
                         self.reliable)
        self.unknown = False
        return pushed

    def held(self, jobs: list[Fetched], known: bool) -> Held:
        """Hand over ``jobs`` and the stat deltas, for a processor being abandoned; ``known``
        is false when the processor cannot vouch that ``jobs`` is all it holds."""
        counters = self.counters
        held = Held(self.lists, self.side, jobs, self.reliable, known and not self.unknown,
                    counters.processed, counters.failed)
        counters.processed = counters.failed = 0
        return held


def release(redis, keys: Keys, private_key: str, unstarted: list[Fetched],
            keep: Fetched | None, reliable: bool) -> int:
    script_keys, args = [private_key], []
    for job in unstarted:
        front_keys, marks = placement.front(keys, placement.place_of_text(
            job.text, job.origin))
        script_keys += front_keys + front_keys[:1] * (3 - len(front_keys))
        args += [job.text, *marks]
    kept = placement.place_of_text(keep.text, keep.origin) if keep \
        else placement.Place("")
    args += [keep.text if keep else "", kept.queue, kept.tenant, keys.root, 1 if reliable else 0]
    return int(RELEASE(redis, script_keys, args))


def bulk_requeue(redis, keys: Keys, held: list[Held]) -> int:
    """Put back what abandoned processors held (Sidekiq's ``bulk_requeue``): their unfinished
    jobs go to the front of their queues, their finished ones are acknowledged, their stat
    deltas flushed. Lists whose contents are unknown are left whole for recovery."""
    pushed = 0
    for unit in held:
        if unit.known or not unit.reliable:
            pushed += release(redis, keys, unit.lists[unit.side], unit.jobs, None, unit.reliable)
        flush_counters(redis, keys, unit.processed, unit.failed)
    return pushed


def flush_counters(redis, keys: Keys, processed: int, failed: int) -> None:
    if not processed:
        return
    day = time.strftime("%Y-%m-%d", time.gmtime())
    COUNT_STATS(redis, keys.stat_keys(day), [processed, failed, DAILY_STAT_TTL])
