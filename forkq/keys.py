r"""Every Redis key forkq reads or writes, in one place.

Sidekiq-compatible keys (DESIGN.md §3) keep Sidekiq's names so that either side can read them;
forkq's own keys live under ``forkq:``. An optional namespace prefixes everything. The table is
the default layout's; the cluster layout (``layout: cluster``) places the same data under hash
tags, one per queue (``ClusterKeys``, docs/redis-cluster.md).

| key | type | writer | reader | TTL |
| --- | --- | --- | --- | --- |
| ``queues`` | set | client (SADD on push) | worker, api | none |
| ``queue:<name>`` | list | client LPUSH; recovery/requeue RPUSH | fetch (right end) | none |
| ``schedule`` | zset | client ``perform_in``/``perform_at``; processor (over-limit reschedule, ``postpone.py``) | poller, api | none |
| ``retry`` | zset | processor on failure | poller, api | none |
| ``dead`` | zset | dead.py only (retry writer, processor, poller, recovery, api) | api | trimmed on add |
| ``processes`` | set | heartbeat | api, recovery | none |
| ``<identity>`` | hash | heartbeat | api, recovery | heartbeat_ttl |
| ``<identity>:work`` / ``:workers`` | hash | heartbeat | api | heartbeat_ttl |
| ``<identity>-signals`` | list | api, ctl, Sidekiq web | heartbeat | 60 s |
| ``stat:processed`` / ``stat:failed`` | string | ``STATS_LUA``: fetch script, coroutine ack, flush at exit | api | none |
| ``stat:<name>:YYYY-MM-DD`` | string | ``STATS_LUA``: fetch script, coroutine ack, flush at exit | api | 5 years |
| ``j|YYMMDD|H:MM`` / ``j|YYMMDD|H:M`` | hash: ``<class>|p``, ``|f``, ``|ms`` | heartbeat (jobmetrics flush) | web, Sidekiq 8 web | 8 h / 3 days |
| ``h|<class>-D-H:M`` | BITFIELD: 26 u16 execution-time buckets | heartbeat (jobmetrics flush) | web, Sidekiq 8 web | 8 h |
| ``forkq:inflight:<slot>:<thread>[:alt]`` | list | fetch script (a thread's two private lists, used in turn) | recovery, master | none |
| ``forkq:inflight:<slot>:async`` | list (the cluster layout has one per queue: ``ClusterKeys.inflight_async``) | processor thread (hand-over script moves a coroutine job in) | coroutine runner (LREM when finished, requeue at the deadline), recovery, master | none |
| ``forkq:slots`` | hash: slot → JSON {identity, threads} | worker at start | recovery | none |
| ``forkq:recovered:<jid>`` | zset of recovery times | recovery | recovery | 72 h |
| ``forkq:recovery-lock`` | string | recovery scan | recovery | a few seconds |
| ``forkq:periodic:leader`` | string: leader identity | periodic leader (one script takes, renews or replaces it, with PX) | leader, api | lease TTL |
| ``forkq:periodic:tick:<name>:<tick>`` | string: claiming identity | periodic leader, before the enqueue | periodic leader | claim TTL |
| ``forkq:periodic:cursor`` | hash: entry name → last tick handled | periodic leader (claim script) | periodic leader | none |
| ``forkq:periodic:state`` | hash: ``<name>:last`` JSON {tick, jid, at}; ``<name>:next`` tick | periodic leader | api, web | none |
| ``forkq:unique:<digest>`` | string: holding jid | client (SET NX PX) | processor, retry writer, recovery (compare-and-delete) at start, success or death | unique_for (+ delay) |
| ``forkq:limiter:concurrent:<name>`` | zset: holder → lease expiry | limiter | limiter | lock_timeout after last use |
| ``forkq:limiter:window:<name>`` | hash: window (index since the epoch), count | limiter | limiter | to the window's end |
| ``forkq:limiter:bucket:<name>`` | hash: tokens, at | limiter | limiter | time to refill |
| ``forkq:batch:<bid>`` (cluster layout: ``forkq:{b:<root bid>}:batch:<bid>``, a tag per batch tree) | hash: the batch record (``flow/batch.py``: counts, callbacks, parent, events fired; in the cluster layout ``firing_<event>`` until its callback is pushed, ``flow/batch_cluster.py``) | client at the batch's commit; worker scripts at each member's end | ``flow/batch.py``, api, web | ``expires_in`` (30 days) from commit; ``keep`` (24 h) from success |
| ``forkq:batch:<bid>:pending`` / ``:unrun`` | set: jids not yet succeeded / not yet run once | client at commit and reopen; worker scripts (``flow/batch_scripts.py``) | same | as the record |
| ``forkq:batch:<bid>:failed`` / ``:dead`` | hash jid → error / set of dead jids | worker scripts at a retry or death | api, web | as the record |
| ``forkq:batch:<bid>:results`` | hash: header index → JSON value (chords) | worker success script | worker success script (the chord's callback) | as the record |
| ``forkq:iteration:<jid>`` | string: JSON ``{cursor, at}`` or ``{done: true}`` | a resumable job (``flow/iterable.py``) after its items | the same job when it runs again | ``cursor_ttl`` (30 days) from each save |
| ``forkq:batches`` | zset: bid → created_at, batches not yet succeeded | client at commit; worker success script (ZREM; the cluster layout: a step after it) | api, metrics gauge (pruned of expired records) | none |
| ``forkq:result:<jid>`` | string: JSON result (status, value, errors, times) | client at enqueue, processor (or a job class owning its results) | ``forkq.results``, Django backend | the job's ``result_ttl`` from each write |
| ``forkq:done:<jid>`` | list of one item: the job reached a final status | result writer, in the script call of the final record (`results.FINISH`) | ``results.get(jid, wait=)`` (BLMOVE onto itself) | ``results.DONE_TTL`` at most |
| ``forkq:paused`` | set of paused queue names | ``flow.pause`` (api, forkqctl, web) | fetch script, control watch, api, metrics | none |
| ``forkq:shards`` | hash: queue → its shard count (cluster layout, ``flow/shards.py``) | each worker at its start (``queues:`` entries) | clients (cached a few seconds) | none |
| ``forkq:shards-ever`` | hash: queue → the highest shard count ever recorded | each worker at its start | workers (drain every index below), poller, api | none |
| ``forkq:cancels`` | zset: jid → Redis time of the cancel | ``flow.cancel`` | fetch script, control watch (trims past ``cancel.KEEP``) | trimmed |
| ``forkq:cancelled`` | string: jobs ended as cancelled | ``cancel.ended_cancelled`` (client or worker) | metrics, api | none |
| ``forkq:level:<level>:<name>`` | list: jobs of priority ``<level>`` (not 0) of queue ``<name>``, LPUSH / taken right (``flow/placement.py``) | client push, poller; put-backs (release, recovery) RPUSH | fetch script, api | none |
| ``forkq:levels:<name>`` | zset: level → level, the levels of ``<name>`` that may hold jobs | push and put-backs (after the job's list); fetch script removes a level it finds empty | fetch script, api | none |
| ``forkq:prioritized`` | set of queue names that ever had a level (the fetch's guard) | push and put-backs at a level; api (queue cleared) | control watch, api | none |
| ``forkq:tenant:<name>,<tenant>`` | list: jobs of fair key ``<tenant>`` of queue ``<name>``, LPUSH / taken right | client push, poller; put-backs RPUSH | fetch script, api | none |
| ``forkq:turns:<name>`` | zset: tenant → its last turn (0: not served since it joined); ``""`` is ``queue:<name>``'s turn | push and put-backs (ZADD NX 0, after the job's list); fetch script (next turn, or removed when its list is empty) | fetch script, api, metrics | none |
| ``forkq:turn:<name>`` | string: the queue's turn counter | fetch script (INCR) | fetch script | none |
| ``forkq:fair`` | set of queue names that ever had a tenant (the fetch's guard) | push and put-backs for a tenant; api (queue cleared) | control watch, api | none |
| ``forkq:fair-running:<name>`` | hash: tenant → jobs of ``<name>`` held under a ``fair_limit`` (``flow/fairlimit.py``) | fetch script (HINCRBY when it takes such a job); release, adopt and recovery give back | fetch script, api | none |
| ``forkq:inflight:<slot>:<thread>[:alt]:fair`` | hash: ``<queue>,<tenant>`` → jobs the fetch counted into that private list | fetch script | fetch script (gives back the list it acknowledges), release, adopt, recovery | none |
| ``forkq:bell:<name>`` | list of at most 16 wake-up tokens | a push not to ``queue:<name>`` (LPUSH, LTRIM) | idle threads (BRPOP) | none |
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import count

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot


#: seconds a daily stat key lives (Sidekiq's 5 years)
DAILY_STAT_TTL = 5 * 365 * 86400
#: seconds a remote-signal list lives after a push
SIGNALS_TTL = 60

#: Lua for every script that counts finished jobs (the fetch, the coroutine runner's
#: acknowledgement, the flush at shutdown): ``count_stats(first, processed, failed, ttl)``
#: adds the deltas to the four keys of ``Keys.stat_keys``, which are ``KEYS[first]`` on, and
#: keeps the daily ones for ``ttl`` seconds.
STATS_LUA = """
local function count_stats(first, processed, failed, ttl)
  local deltas = {tonumber(processed), tonumber(failed)}
  for i = 1, 2 do
    if deltas[i] > 0 then
      redis.call('INCRBY', KEYS[first + i - 1], deltas[i])
      redis.call('INCRBY', KEYS[first + i + 1], deltas[i])
      redis.call('EXPIRE', KEYS[first + i + 1], ttl)
    end
  end
end
"""


#: the tail of the cluster layout's directory of queues (``ClusterKeys.queues``)
CLUSTER_QUEUES = "forkq:{meta}:queues"
#: most shards one queue may have (``shards`` in a ``queues:`` entry, cluster layout)
MAX_SHARDS = 256
#: the slots a shard's tag may land in from its target (``shard_tag``): 1/256 of the slots
_SHARD_WINDOW = REDIS_CLUSTER_HASH_SLOTS // MAX_SHARDS


@lru_cache(maxsize=4096)
def shard_tag(queue: str, index: int) -> str:
    """The hash tag of shard ``index`` of ``queue``: ``q:<name>`` for shard 0 (the unsharded
    queue's), ``q:<name>#<index>.<salt>`` for the others, ``salt`` the first number that puts
    the tag's slot within ``_SHARD_WINDOW`` slots after its target. The targets spread over
    the slot space from shard 0's slot by bit reversal (a half-turn, then quarters, then
    eighths...), so shards 0..n-1 of any count n are spread evenly: with slots split in
    contiguous ranges (``redis-cli --cluster create``), a primary whose range spans 1/p of
    them (p the largest power of two not above n, plus the window) holds a shard.
    Deterministic: every client and worker computes the same tags."""
    if index == 0:
        return f"q:{queue}"
    spread = int(f"{index:014b}"[::-1], 2)  # bit reversal of a 14-bit index: 16,384 slots
    target = (key_slot(f"q:{queue}".encode()) + spread) % REDIS_CLUSTER_HASH_SLOTS
    for salt in count():
        tag = f"q:{queue}#{index}.{salt}"
        if (key_slot(tag.encode()) - target) % REDIS_CLUSTER_HASH_SLOTS < _SHARD_WINDOW:
            return tag
    raise AssertionError("unreachable: count() does not end")


def cluster_name_problem(queue: str) -> str | None:
    """Why ``queue`` cannot name a queue in the cluster layout, or None: ``#`` names shards."""
    if "#" in queue:
        return ("'#' is not allowed in a queue name in the cluster layout (it names a "
                "queue's shards)")
    return None


def shard_index(value) -> int:
    """A payload's ``shard``: an int from 1 to ``MAX_SHARDS`` - 1, else 0 (the first shard,
    which is the unsharded queue: a payload written by other code is placed, never refused)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < MAX_SHARDS:
        return value
    return 0
#: the tails of the cluster layout's directories: sets of queue names, in the meta slot, that
#: a push adds to once per client (``connection/cluster.py``): the queues, and those that ever
#: had a priority level or a tenant (``ClusterKeys.prioritized``, ``.fair``)
CLUSTER_DIRECTORIES = (CLUSTER_QUEUES, "forkq:{meta}:prioritized", "forkq:{meta}:fair")

#: Lua: the names of a queue's placement keys (``flow/placement.py``: levels, tenants, turns,
#: the fair-running counts, the bell) from ``root`` (``Keys.root``) and the queue's name, as
#: ``Keys`` and ``ClusterKeys`` make them: the cluster layout's root ends with ``forkq:{q:``,
#: which the queue's name completes into the queue's hash tag. ``queue_key(root, name, part)`` is
#: ``<root>forkq:<part>:<name>`` in the default layout; ``guard_key`` gives the set of queue
#: names a place marks, or, in the cluster layout (where that set is in another slot and the
#: client marks it), the sorted set ``zset`` itself, which ``placement.MARK_LUA`` then skips.
QUEUE_KEYS_LUA = """
local function clustered(root) return string.sub(root, -9) == 'forkq:{q:' end
local function queue_key(root, name, part)
  if clustered(root) then return root .. name .. '}:' .. part end
  return root .. 'forkq:' .. part .. ':' .. name
end
local function tenant_key(root, name, tenant)
  if clustered(root) then return root .. name .. '}:tenant:' .. tenant end
  return root .. 'forkq:tenant:' .. name .. ',' .. tenant
end
local function guard_key(root, which, zset)
  if clustered(root) then return zset end
  return root .. 'forkq:' .. which
end
"""


@dataclass(frozen=True)
class Keys:
    namespace: str | None = None
    #: the key layout's name (``layout`` in the config)
    layout = "default"

    def _k(self, name: str) -> str:
        return f"{self.namespace}:{name}" if self.namespace else name

    @property
    def root(self) -> str:
        """What every key starts with: the namespace and its colon, or nothing (for scripts
        that make a queue's level keys from its name)."""
        return self._k("")

    def lua_name(self, queue: str) -> str:
        """What completes ``root`` into ``queue``'s keys in ``QUEUE_KEYS_LUA``: its name."""
        return queue

    @property
    def queues(self) -> str:
        return self._k("queues")

    def queue(self, name: str) -> str:
        return self._k(f"queue:{name}")

    @property
    def schedule(self) -> str:
        return self._k("schedule")

    @property
    def retry(self) -> str:
        return self._k("retry")

    def schedule_for(self, queue: str) -> str:
        """The sorted set a job of ``queue`` waits in until its time (one for all here)."""
        return self.schedule

    def shard_queue(self, queue: str, shard=0) -> str:
        """The name the keys of shard ``shard`` of ``queue`` are made from (a payload's
        ``shard``, checked by ``shard_index``): the queue itself here, which has no shards."""
        return queue

    @property
    def shards(self) -> str:
        """Hash: queue → its shard count, as the last worker to start configured it."""
        return self._k("forkq:shards")

    @property
    def shards_ever(self) -> str:
        """Hash: queue → the highest shard count ever recorded (every index below may hold
        jobs, so workers drain them all)."""
        return self._k("forkq:shards-ever")

    def retry_for(self, queue: str) -> str:
        """The sorted set a failed job of ``queue`` waits in until its retry."""
        return self.retry

    def schedule_sets(self, queues) -> list[str]:
        """Every ``schedule`` set the jobs of ``queues`` wait in (one for all here)."""
        return [self.schedule]

    def retry_sets(self, queues) -> list[str]:
        """Every ``retry`` set the failed jobs of ``queues`` wait in (one for all here)."""
        return [self.retry]

    @property
    def dead(self) -> str:
        return self._k("dead")

    @property
    def processes(self) -> str:
        return self._k("processes")

    def process(self, identity: str) -> str:
        return self._k(identity)

    def work(self, identity: str) -> str:
        return self._k(f"{identity}:work")

    def workers(self, identity: str) -> str:
        return self._k(f"{identity}:workers")

    def signals(self, identity: str) -> str:
        return self._k(f"{identity}-signals")

    def stat(self, name: str) -> str:
        return self._k(f"stat:{name}")

    def daily_stat(self, name: str, day: str) -> str:
        return self._k(f"stat:{name}:{day}")

    def stat_keys(self, day: str) -> list[str]:
        """The keys ``STATS_LUA`` counts in: processed and failed, in total and on ``day``."""
        return [self.stat("processed"), self.stat("failed"),
                self.daily_stat("processed", day), self.daily_stat("failed", day)]

    def queue_stat_keys(self, queue: str, day: str) -> list[str]:
        """``stat_keys`` that the jobs fetched from ``queue`` count in (the same for every
        queue here; the queue's own in the cluster layout)."""
        return self.stat_keys(day)

    def job_metrics(self, bucket: str) -> str:
        """Sidekiq 8's per-class counts of one minute or ten (``jobmetrics``)."""
        return self._k(f"j|{bucket}")

    def job_histogram(self, class_name: str, window: str) -> str:
        """Sidekiq 8's execution-time histogram of one class and minute (``jobmetrics``)."""
        return self._k(f"h|{class_name}-{window}")

    def inflight(self, slot: str, thread: int, side: int = 0) -> str:
        """One of a thread's two private lists (``side`` 0 or 1; see ``fetch.py``)."""
        return self._k(f"forkq:inflight:{slot}:{thread}{':alt' if side else ''}")

    def inflight_pair(self, slot: str, thread: int) -> tuple[str, str]:
        return self.inflight(slot, thread, 0), self.inflight(slot, thread, 1)

    def inflight_async(self, slot: str, queue: str | None = None) -> str:
        """The private list of a process's event loop: coroutine jobs it runs
        (``worker/coroutines.py``); one for every queue here, one per ``queue`` (the queue a
        job was fetched from) in the cluster layout."""
        return self._k(f"forkq:inflight:{slot}:async")

    def private_lists(self, slot: str, threads: int, queues=()) -> list[str]:
        """A slot's private lists: two per processor thread, one for its event loop
        (``queues``, the slot's queue names, place them in the cluster layout)."""
        return [key for index in range(threads) for key in self.inflight_pair(slot, index)] + \
            [self.inflight_async(slot)]

    def home_queue(self, private_list: str) -> str | None:
        """The queue whose jobs ``private_list`` holds, where the layout says (cluster);
        None here: a job goes back to the queue its payload names."""
        return None

    def apart(self, key: str, other: str) -> bool:
        """Whether one script call cannot touch both keys (another hash slot): never here."""
        return False

    @property
    def slots(self) -> str:
        return self._k("forkq:slots")

    def recovered(self, jid: str) -> str:
        return self._k(f"forkq:recovered:{jid}")

    @property
    def recovery_lock(self) -> str:
        return self._k("forkq:recovery-lock")

    @property
    def periodic_leader(self) -> str:
        return self._k("forkq:periodic:leader")

    def periodic_tick(self, name: str, tick: str) -> str:
        return self._k(f"forkq:periodic:tick:{name}:{tick}")

    @property
    def periodic_cursor(self) -> str:
        return self._k("forkq:periodic:cursor")

    @property
    def periodic_state(self) -> str:
        return self._k("forkq:periodic:state")

    def unique(self, digest: str, queue: str) -> str:
        """A unique job's lock; ``queue``, the queue its digest names (``unique.lock_queue``),
        places it in the cluster layout."""
        return self._k(f"forkq:unique:{digest}")

    def limiter(self, kind: str, name: str) -> str:
        return self._k(f"forkq:limiter:{kind}:{name}")

    def result(self, jid: str) -> str:
        return self._k(f"forkq:result:{jid}")

    def batch(self, bid: str) -> str:
        """A batch's record; its sets are this key plus ``:pending`` etc. (``flow/batch.py``)."""
        return self._k(f"forkq:batch:{bid}")

    def batch_prefix(self, bid: str) -> str:
        """What a batch's record key is made of with its bid (the worker scripts walk up to
        the parents of ``bid`` with it: the same prefix for a whole batch tree)."""
        return self._k("forkq:batch:")

    @property
    def batches(self) -> str:
        return self._k("forkq:batches")

    def iteration(self, jid: str) -> str:
        """A resumable job's saved cursor (``flow/iterable.py``)."""
        return self._k(f"forkq:iteration:{jid}")
    def done(self, jid: str) -> str:
        """The list a waiter blocks on until the job's result is final (``results.py``)."""
        return self._k(f"forkq:done:{jid}")

    @property
    def paused(self) -> str:
        return self._k("forkq:paused")

    @property
    def cancels(self) -> str:
        return self._k("forkq:cancels")

    def level(self, queue: str, level: int) -> str:
        """The list of ``queue``'s jobs of priority ``level`` (not 0: ``flow/placement.py``)."""
        return self._k(f"forkq:level:{level}:{queue}")

    def levels(self, queue: str) -> str:
        return self._k(f"forkq:levels:{queue}")

    @property
    def prioritized(self) -> str:
        return self._k("forkq:prioritized")

    def tenant(self, queue: str, tenant: str) -> str:
        """The list of ``queue``'s jobs of fair key ``tenant`` (a queue name holds no comma)."""
        return self._k(f"forkq:tenant:{queue},{tenant}")

    def turns(self, queue: str) -> str:
        return self._k(f"forkq:turns:{queue}")

    def turn(self, queue: str) -> str:
        return self._k(f"forkq:turn:{queue}")

    @property
    def fair(self) -> str:
        return self._k("forkq:fair")

    def fair_running(self, queue: str) -> str:
        """Jobs of ``queue`` held under a ``fair_limit``, by tenant (``flow/fairlimit.py``)."""
        return self._k(f"forkq:fair-running:{queue}")

    def bell(self, queue: str) -> str:
        return self._k(f"forkq:bell:{queue}")

    @property
    def cancelled(self) -> str:
        """Jobs ended as cancelled, in total (``forkq_jobs_cancelled_total``)."""
        return self._k("forkq:cancelled")


@dataclass(frozen=True)
class ClusterKeys(Keys):
    """The cluster layout (``layout: cluster``, docs/redis-cluster.md): one hash tag per queue.

    What one script call touches for one queue shares its tag ``{q:<name>}``, so every call
    stays in one hash slot: the queue's list, the threads' private lists for it, its
    ``schedule`` and ``retry`` sets and its counters. Everything else (the directory of queues,
    processes, heartbeats, slots, the dead set, recovery marks) shares the tag ``{meta}``.
    Ruby Sidekiq cannot read this layout.

    | key | type | slot |
    | --- | --- | --- |
    | ``forkq:{q:<name>}:jobs`` | list: the queue | queue's |
    | ``forkq:{q:<name>}:inflight:<slot>:<thread>[:alt]`` | list: a thread's private list | queue's |
    | ``forkq:{q:<name>}:inflight:<slot>:async`` | list: the event loop's private list for the queue's coroutine jobs | queue's |
    | ``forkq:{q:<name>}:schedule`` / ``:retry`` | zset | queue's |
    | ``forkq:{q:<name>}:stat:processed`` / ``:failed`` / ``:<name>:<day>`` | string | queue's |
    | ``forkq:{q:<name>#<i>.<salt>}:...`` | the same keys for shard ``i`` > 0 of a sharded queue (``shard_tag``) | shard's |
    | ``forkq:{meta}:shards`` / ``:shards-ever`` | hash: queue → shard count, last recorded / highest | meta |
    | ``forkq:{q:<name>}:unique:<digest>`` | string: a unique job's lock | queue's |
    | ``forkq:{l:<name>}:limiter:<kind>`` | as in ``Keys.limiter`` | the limiter's |
    | ``forkq:{b:<root bid>}:batch:<bid>`` (+ ``:pending``...) | as in ``Keys.batch``, a tag per batch tree | the tree's |
    | ``forkq:{q:<name>}:level:<p>``, ``:levels``, ``:tenant:<t>``, ``:turns``, ``:turn``, ``:fair-running``, ``:bell`` | as ``Keys``' ``forkq:level:<p>:<name>``... | queue's |
    | ``forkq:{q:<name>}:inflight:<slot>:<thread>[:alt]:fair`` | hash: a private list's ``fair_limit`` counts | queue's |
    | ``forkq:{meta}:<any other key of Keys>`` | as in ``Keys`` | meta |
    """

    layout = "cluster"

    def _k(self, name: str) -> str:
        tagged = "forkq:{meta}:" + name.removeprefix("forkq:")
        return f"{self.namespace}:{tagged}" if self.namespace else tagged

    def _tagged(self, tag: str, name: str) -> str:
        tagged = f"forkq:{{{tag}}}:{name}"
        return f"{self.namespace}:{tagged}" if self.namespace else tagged

    def _q(self, queue: str, name: str) -> str:
        return self._tagged(_tag_of(queue), name)

    def shard_queue(self, queue: str, shard=0) -> str:
        """``<queue>#<index>`` for shards 1 and up (whose keys carry ``shard_tag``), the queue
        itself for shard 0 and for a payload without a valid ``shard``."""
        index = shard_index(shard)
        return f"{queue}#{index}" if index else queue

    def queue(self, name: str) -> str:
        return self._q(name, "jobs")

    @property
    def schedule(self) -> str:
        raise TypeError("the cluster layout has a schedule set per queue: schedule_for(queue)")

    @property
    def retry(self) -> str:
        raise TypeError("the cluster layout has a retry set per queue: retry_for(queue)")

    def schedule_for(self, queue: str) -> str:
        return self._q(queue, "schedule")

    def retry_for(self, queue: str) -> str:
        return self._q(queue, "retry")

    def schedule_sets(self, queues) -> list[str]:
        return [self.schedule_for(queue) for queue in queues]

    def retry_sets(self, queues) -> list[str]:
        return [self.retry_for(queue) for queue in queues]

    def queue_stat_keys(self, queue: str, day: str) -> list[str]:
        """``stat_keys`` of one queue: the counters of the jobs fetched from it."""
        return [self._q(queue, "stat:processed"), self._q(queue, "stat:failed"),
                self._q(queue, f"stat:processed:{day}"), self._q(queue, f"stat:failed:{day}")]

    def queue_inflight(self, queue: str, slot: str, thread: int, side: int = 0) -> str:
        """One of a thread's two private lists for ``queue`` (``worker/clusterfetch.py``)."""
        return self._q(queue, f"inflight:{slot}:{thread}{':alt' if side else ''}")

    def inflight_async(self, slot: str, queue: str | None = None) -> str:
        """The event loop's private list for ``queue``'s coroutine jobs, in the queue's slot
        with the threads' lists they are handed over from (``worker/coroutines.py``)."""
        if queue is None:
            raise TypeError("the cluster layout has an event loop list per queue: "
                            "inflight_async(slot, queue)")
        return self._q(queue, f"inflight:{slot}:async")

    @property
    def root(self) -> str:
        """The start of a queue's keys up to its name (``QUEUE_KEYS_LUA``)."""
        return self._q("", "")[:-2]

    def lua_name(self, queue: str) -> str:
        """A shard's tag completes ``root`` (``shard_tag``), a queue's its name."""
        return _tag_of(queue).removeprefix("q:")

    # A queue's placement keys (flow/placement.py) share its tag, so that the fetch, the push
    # and every put-back stay in one slot; the sets of names that ever had a level or a tenant
    # (``prioritized``, ``fair``) are directories in the meta slot, marked by the client.
    def level(self, queue: str, level: int) -> str:
        return self._q(queue, f"level:{level}")

    def levels(self, queue: str) -> str:
        return self._q(queue, "levels")

    def tenant(self, queue: str, tenant: str) -> str:
        return self._q(queue, f"tenant:{tenant}")

    def turns(self, queue: str) -> str:
        return self._q(queue, "turns")

    def turn(self, queue: str) -> str:
        return self._q(queue, "turn")

    def fair_running(self, queue: str) -> str:
        return self._q(queue, "fair-running")

    def bell(self, queue: str) -> str:
        return self._q(queue, "bell")

    def limiter(self, kind: str, name: str) -> str:
        """A tag per limiter name: each script of a limiter touches its one key, and the
        limiters spread over the primaries."""
        return self._tagged(f"l:{name}", f"limiter:{kind}")

    def unique(self, digest: str, queue: str) -> str:
        """In the queue's slot: the lock and the push of its job are one script call, and a
        digest names its queue, so uniqueness is per queue in both layouts."""
        return self._q(queue, f"unique:{digest}")

    def batch(self, bid: str) -> str:
        """A tag per batch tree, its root's bid: a child's bid starts with its root's
        (``<root>.<jid>``, ``flow/batch.py``), so a member's count and the walk up to its
        parents stay in one slot."""
        return self.batch_prefix(bid) + bid

    def batch_prefix(self, bid: str) -> str:
        return self._tagged(f"b:{bid.split('.', 1)[0]}", "batch:")

    def private_lists(self, slot: str, threads: int, queues=()) -> list[str]:
        return [key for queue in queues for key in [
            *(self.queue_inflight(queue, slot, index, side)
              for index in range(threads) for side in (0, 1)),
            self.inflight_async(slot, queue)]]

    def apart(self, key: str, other: str) -> bool:
        return key_slot(key.encode()) != key_slot(other.encode())

    def home_queue(self, private_list: str) -> str | None:
        """The queue (or shard, ``shard_queue``) named by the hash tag of a private list
        (``queue_inflight``)."""
        tagged = private_list.partition("forkq:{q:")[2]
        return _untagged(tagged.rpartition("}:inflight:")[0]) or None


def _tag_of(name: str) -> str:
    """The hash tag of a queue or shard name (``ClusterKeys.shard_queue``)."""
    queue, _, index = name.rpartition("#")
    if queue and index.isdigit() and shard_index(int(index)) and index == str(int(index)):
        return shard_tag(queue, int(index))
    return f"q:{name}"


def _untagged(tag: str) -> str:
    """The queue or shard name whose tag is ``tag`` (the inverse of ``_tag_of``)."""
    name, _, salt = tag.rpartition(".")
    if salt.isdigit() and _tag_of(name) == f"q:{tag}":
        return name
    return tag


def keys_for(layout: str, namespace: str | None) -> Keys:
    """The keys of a config's ``layout``."""
    return ClusterKeys(namespace) if layout == "cluster" else Keys(namespace)
