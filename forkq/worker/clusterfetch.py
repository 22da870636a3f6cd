"""Fetching in the cluster layout (``layout: cluster``): ``Fetcher`` with one queue per call.

Runs in each processor thread, as ``fetch.Fetcher`` does, whose rules it keeps: two private
lists used in turn, adoption after a lost reply, release that requeues only what it removes,
stat deltas zeroed only once a reply arrived. What differs is that a script call may touch one
hash slot only (``keys.ClusterKeys``): a thread has its two private lists *per queue*, in the
queue's slot, and one call acknowledges the previous batch, counts the stats into the queue's
counters and pops up to ``batch`` jobs from that queue alone.

Queue order: the queues are visited in the order ``ordering.QueueOrder`` gives (strict, or
weighted at random), one call each, until one yields jobs. So a busy thread whose first queue
has jobs makes one call per batch, as in the default layout; each empty queue ahead of the one
that has jobs costs a round trip more (strict order with an empty first queue: two calls a
batch). When the thread moves to another queue, the private list of its finished batch (in
the old queue's slot) is acknowledged first by a call of its own (``ACKNOWLEDGE``: the list's
``DEL`` and the give-back of its ``fair_limit`` counts).

Priority levels and fair shares (``flow/placement.py``): a queue's levels, tenants and turns
carry its hash tag, and the script takes from them by the same Lua as the default layout's
(``fetch.TAKE_LUA``), looking for them itself (one ``EXISTS`` a call on a plain queue) rather
than through the meta slot's guard sets.

Sharded queues (``flow/shards.py``): each shard is a list of its own slot, tried at its queue's
place in the order (the queue's weight covers all its shards), from the shard the thread is on:
a thread stays on a shard that gives it jobs for ``STAY`` calls, then starts at the next one,
so no shard starves and the ``DEL`` of a move is paid once in ``STAY`` calls. A job fetched
from a shard is named by its queue (``Fetched.queue``) and put back into its shard
(``Fetched.home``).

Paused queues are skipped in Python, from the process's view of ``forkq:paused`` (twice a
second): a queue paused between two looks may give one more batch. Cancel marks (in the meta
slot) are not checked by the fetch: the processor checks its process's copy of them before
each job (``flow/cancel.py``).

Connection: the busy path's call goes on a connection of the queue's primary that the thread
keeps (taken from that node's pool in redis-py's ``RedisCluster``, which knows the slot
table): the cluster client's own routing costs about twice the round trip. When the slot has
moved (``MOVED``, ``ASK``) the call goes again through ``RedisCluster``, which follows the
redirection and refreshes its table; the idle wait and the rest go through it directly.
With ``wait_replicas`` the busy path's call is followed by ``WAIT`` on that same connection
(``connection.call_replicated``, a shortfall logged as in the default layout); a call sent
again after a redirection has none, and the next call's ``WAIT`` on that primary covers it.
"""

from __future__ import annotations

import random

from redis.client import NEVER_DECODE
from redis.exceptions import AskError, ClusterDownError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .fetch import IDLE_TIMEOUT, TAKE_LUA, Fetched, Fetcher, decoded, idle_round, next_batch
from ..connection import call_replicated, cluster
from ..connection.scripts import Script
from ..flow.fairlimit import FAIR_LIMIT_LUA
from ..keys import DAILY_STAT_TTL, STATS_LUA

CLUSTER_FETCH_SCRIPT = STATS_LUA + """
-- KEYS: private list to acknowledge, private list to fill, the queue's 4 stat keys, the
-- queue, its levels, its tenants' turns, its fair_limit counts (all in the queue's hash
-- slot). ARGV: max jobs, processed delta, failed delta, daily TTL, reliable (1/0), Keys.root,
-- the queue's name. Returns the jobs taken.
local reliable = ARGV[5] == '1'
if reliable then redis.call('DEL', KEYS[1]) end
count_stats(3, ARGV[2], ARGV[3], ARGV[4])
local want = tonumber(ARGV[1])
-- A queue's levels, tenants' turns and fair_limit counts are looked for here, in its own
-- slot, rather than through the guard sets of fetch.py's script (in the meta slot). Without
-- any, one RPOP with a count (Redis 7 seeks from the tail; 6.2 walks a long list from its
-- head, see fetch.py's take), and the placement Lua below is not even defined.
if redis.call('EXISTS', KEYS[8], KEYS[9], KEYS[10]) == 0 then
  local jobs = redis.call('RPOP', KEYS[7], want)
  if not jobs then return {} end
  if reliable then redis.call('RPUSH', KEYS[2], unpack(jobs)) end
  return jobs
end
""" + FAIR_LIMIT_LUA + """
local root, name = ARGV[6], ARGV[7]
give_back(KEYS[1] .. ':fair', root)
local record = (reliable and KEYS[2] or KEYS[1]) .. ':fair'
local cancels, pop_count = false, true
local out = {}
""" + TAKE_LUA + """
local fair = redis.call('EXISTS', KEYS[9]) == 1
if redis.call('EXISTS', KEYS[8]) == 1 then
  take_levels(KEYS[7], name, 0, fair)
elseif fair then
  take_fair(KEYS[7], name, 0)
else
  take(KEYS[7], 0)
end
local jobs = {}
for i = 2, #out, 2 do jobs[#jobs + 1] = out[i] end
return jobs
"""
CLUSTER_FETCH = Script(CLUSTER_FETCH_SCRIPT)
#: calls in a row a thread starts at the same shard of a sharded queue (``_turned``)
STAY = 16
#: KEYS: a private list of finished jobs. ARGV: Keys.root. Deletes it, gives back its counts.
ACKNOWLEDGE = Script(FAIR_LIMIT_LUA + """
redis.call('DEL', KEYS[1])
give_back(KEYS[1] .. ':fair', ARGV[1])
""")


class ClusterFetcher(Fetcher):
    """A processor thread's fetcher in the cluster layout; ``slot`` names its private lists,
    ``shards`` (``flow.shards.ShardPlan``) the lists of each queue."""

    def __init__(self, redis, keys, *, slot: str, shards, **options) -> None:
        super().__init__(redis, keys, lists=("", ""), **options)
        self.slot = slot
        self.shards = shards
        #: the queue or shard whose private lists ``lists`` are; None before the first call
        self.home: str | None = None
        #: the queue ``home`` is (a shard of)
        self.home_queue: str | None = None
        #: whether ``lists[side]`` may hold a finished batch not yet acknowledged
        self.holding = False
        #: whether a job taken from ``home`` had a ``fair_limit``: its record's counts must go
        #: back when the thread moves to another queue, in basic mode too
        self.counted = False
        self._day_keys: dict[str, tuple[str, list[str]]] = {}
        #: queue → the keys of its levels, turns and fair_limit counts (``_place_keys_of``)
        self._place_keys: dict[str, tuple[str, str, str]] = {}
        #: node name → (its pool, a connection of it) for the busy path (``_call``)
        self._connections: dict[str, tuple] = {}
        #: per sharded queue: the shard index a fetch starts at, and the calls in a row the
        #: thread has started there (``_turned``)
        self._turns: dict[str, int] = {}
        self._stay = 0

    def fetch(self) -> list[Fetched]:
        if self.unknown:
            return self.adopt()
        paused = self.paused.names
        for name in self.queues.order():
            if name not in paused:
                asked = self.batch  # an empty shard does not shrink the ask of the next one
                for index, home in self._homes(name):
                    self.batch = asked
                    jobs = self._fetch_from(name, home)
                    if jobs:
                        self._turned(name, index)
                        return jobs
        return []

    def _homes(self, name: str) -> list[tuple[int, str]]:
        """The lists of queue ``name`` in the order a fetch tries them: its shards in turn
        from the thread's current one (a random one at first), else the queue alone."""
        homes = self.shards.names(name)
        if len(homes) == 1:
            return [(0, name)]
        start = self._turns.get(name)
        if start is None:
            start = self._turns[name] = random.randrange(len(homes))
        return [((start + step) % len(homes), homes[(start + step) % len(homes)])
                for step in range(len(homes))]

    def _turned(self, name: str, index: int) -> None:
        """A thread stays on the shard that gave it jobs for up to ``STAY`` calls (each move
        costs the finished batch's ``DEL`` in the old shard's slot), then starts at the next
        one, so that every shard is visited while others keep filling."""
        count = len(self.shards.names(name))
        if count == 1:
            return
        self._stay = self._stay + 1 if self._turns.get(name) == index else 1
        moving = self._stay >= STAY
        self._turns[name] = (index + 1) % count if moving else index
        self._stay = 0 if moving else self._stay

    def _fetch_from(self, name: str, home: str) -> list[Fetched]:
        self._settle(name, home)
        counters = self.counters
        ack, fill = self.lists[self.side], self.lists[1 - self.side]
        keys = [ack, fill, *self._queue_stat_keys(home), self._list(home),
                *self._place_keys_of(home)]
        if self.reliable:
            self.unknown, self.side = True, 1 - self.side
        raw = self._call(keys, (self.batch, counters.processed, counters.failed,
                                DAILY_STAT_TTL, 1 if self.reliable else 0, self.keys.root,
                                self.keys.lua_name(home)))
        counters.processed = counters.failed = 0  # only now: see fetch.py's docstring
        jobs = [self._fetched(decoded(text)) for text in raw]
        self.batch = next_batch(self.batch, len(jobs), self.seconds_per_job)
        self.holding = bool(jobs)
        self.counted = self.counted or any(
            isinstance(job.text, str) and '"fair_limit"' in job.text for job in jobs)
        self.unknown = False
        return jobs

    def _fetched(self, text) -> Fetched:
        """A job of the current list: named by its queue, put back into its shard."""
        home = self.home if self.home != self.home_queue else None
        return Fetched(self.home_queue, text, home=home)

    def _list(self, home: str) -> bytes:
        key = self._queue_keys.get(home)
        if key is None:
            key = self._queue_keys[home] = self.keys.queue(home).encode()
        return key

    def _call(self, keys: list[str], args: tuple) -> list:
        """The fetch script on the queue's primary (``_on_node``)."""
        command = CLUSTER_FETCH.command(keys, args)
        return self._on_node(keys[-1], lambda send: CLUSTER_FETCH.send_by(send, command),
                             lambda node: CLUSTER_FETCH(self.redis, keys, args, raw=True,
                                                        node=node))

    def _on_node(self, key: str, send_with, fallback):
        """``send_with(send)`` on a connection of ``key``'s primary, kept for the next call:
        ``RedisCluster``'s routing layers cost more than the round trip. A redirection (the
        slot moved: ``MOVED``, ``ASK``, ``TRYAGAIN``) or a cluster that is down means the node
        did not run it: ``fallback(node)`` sends it again through the cluster client, to that
        node, which follows the redirection and learns the new slot table but raises a lost
        reply rather than sending the call again (``Script``'s ``node``). A node that does not
        answer makes the cluster client read the slot table again (``cluster.relearn``) before
        the error is raised."""
        node = self.redis.get_node_from_key(key)
        connection = self._connections.get(node.name)
        if connection is None:
            pool = node.redis_connection.connection_pool
            connection = self._connections[node.name] = (pool, pool.get_connection())
        try:
            return send_with(lambda command: call_replicated(
                self.redis, connection[1], *command, disable_decoding=True))
        except (AskError, TryAgainError, ClusterDownError):
            self._drop(node.name)
            return fallback(node)
        except (RedisConnectionError, RedisTimeoutError):
            connection[1].disconnect()
            self._drop(node.name)
            cluster.relearn(self.redis)
            raise

    def _drop(self, name: str) -> None:
        pool, connection = self._connections.pop(name)
        pool.release(connection)

    def _settle(self, name: str, home: str) -> None:
        """Make the private lists of ``home`` (queue ``name`` or a shard of it) the thread's,
        acknowledging the finished batch held in another list's first (another slot: a call
        of its own)."""
        if home == self.home:
            return
        if (self.holding and self.reliable) or self.counted:
            finished, root = self.lists[self.side], self.keys.root
            command = ACKNOWLEDGE.command([finished], [root])
            self._on_node(finished, lambda send: ACKNOWLEDGE.send_by(send, command),
                          lambda node: ACKNOWLEDGE(self.redis, [finished], [root], node=node))
        self.holding = self.counted = False
        self.home, self.home_queue = home, name
        self.lists = (self.keys.queue_inflight(home, self.slot, self.thread_index, 0),
                      self.keys.queue_inflight(home, self.slot, self.thread_index, 1))

    def _place_keys_of(self, name: str) -> tuple[str, str, str]:
        keys = self._place_keys.get(name)
        if keys is None:
            keys = self._place_keys[name] = (self.keys.levels(name), self.keys.turns(name),
                                             self.keys.fair_running(name))
        return keys

    def _queue_stat_keys(self, name: str) -> list[str]:
        self._stat_keys()  # keeps ``_day`` on today (UTC)
        day = self._day[0]
        cached = self._day_keys.get(name)
        if cached is None or cached[0] != day:
            cached = self._day_keys[name] = (day, self.keys.queue_stat_keys(name, day))
        return cached[1]

    def adopt(self) -> list[Fetched]:
        """As ``Fetcher.adopt``; a job's queue is the one its private list belongs to."""
        jobs = [self._fetched(job.text) for job in super().adopt()]
        self.holding = bool(jobs)
        return jobs

    def _block_on(self, name: str) -> list[Fetched]:
        """The idle wait on queue ``name``; on a sharded one, on the shard that the thread's
        index and the idle round give (``idle_round``), so idle threads spread over its
        shards and move on each round: a job pushed to a shard no thread waits on is taken
        by the next fetch, within ``IDLE_TIMEOUT``."""
        homes = self.shards.names(name)
        self._settle(name, homes[(self.thread_index + idle_round()) % len(homes)])
        source = self._list(self.home)
        if not self.reliable:
            popped = self.redis.execute_command("BRPOP", source, IDLE_TIMEOUT,
                                                **{NEVER_DECODE: True})
            return [self._fetched(decoded(popped[1]))] if popped else []
        self.unknown = True
        # To the queue's node: the cluster client would repeat a BLMOVE whose reply was lost,
        # moving a second job into the private list and returning only that one; the
        # processor calls ``wait`` again instead, which adopts the list.
        raw = self.redis.execute_command("BLMOVE", source, self.private_key, "RIGHT", "RIGHT",
                                         IDLE_TIMEOUT, target_nodes=self.redis.get_node_from_key(
                                             source), **{NEVER_DECODE: True})
        self.unknown = False
        self.holding = raw is not None
        return [self._fetched(decoded(raw))] if raw is not None else []

    def release(self, unstarted: list[Fetched], keep: Fetched | None = None) -> int:
        pushed = super().release(unstarted, keep)
        self.holding = keep is not None
        return pushed

    def close(self) -> None:
        for name in list(self._connections):
            self._drop(name)
