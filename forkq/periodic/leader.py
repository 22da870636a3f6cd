"""The periodic leader: one process among all masters enqueues each tick of each entry, once.

Runs wherever the host calls ``PeriodicScheduler.tick(redis, now)`` from its loop (at least every
``lease_ttl / 3`` seconds): the master's loop, with a connection opened and closed around the
call (``master.py``). No threads, no connection kept.

Steps of a call: take or renew the lease (``Leader.try_lead``); if this process leads, for each
entry compute the ticks due since the entry's cursor (the last tick handled, kept in Redis so a
new leader carries on where the old one stopped), claim each tick (``claim_tick``: the per-tick
key ``SET NX`` and the cursor advance in one script), enqueue it through the function given,
and record the last run and the next tick in the state hash for the web UI.

Failure rules:
- kill -9 of the leader: its lease expires after ``lease_ttl``; another master's next call takes
  it and enqueues the ticks the dead one left, in order, still on time if they are less than
  ``late_after`` seconds old. Nothing the dead leader claimed is enqueued again: the claim and
  the cursor advance are one atomic step, and the cursor only moves forward.
- death between a claim and its enqueue loses that one tick (it is claimed, so no one else
  enqueues it): a window of one local call. An enqueue that raises is undone (claim deleted,
  cursor put back) and tried again at the next call.
- ticks that passed with no leader at all for more than ``late_after`` seconds follow the
  entry's ``missed`` policy: ``skip`` drops them, ``once`` enqueues the latest of them once.
- clock skew: each host computes ticks from its own clock, but a tick's identity is its
  scheduled time (the same number on every host), so two hosts can never both enqueue one
  tick, whatever their clocks say. What skew still does: a leader whose clock runs ahead
  enqueues a tick early by its skew, and a leader whose clock lags enqueues late by it; a
  leader change between hosts skewed by more than ``late_after`` may count on-time ticks as
  missed. Keep hosts on NTP. The lease itself is timed by Redis (``PX``), not by host clocks.
- Redis errors propagate to the host's loop, which logs the transition; a leader that cannot
  renew stops acting as one when its lease lapses (``Leader.is_leader`` turns false).
- a stale leader (paused past its lease while another took over) may still claim a tick, but
  the claim key and the forward-only cursor keep each tick to one enqueue.
- a lease key no leader wrote (no TTL, a TTL longer than any lease, not a string: set by hand
  or by a client with too broad rights) would otherwise stop periodic jobs for good: the next
  call replaces it and logs that once.
"""

from __future__ import annotations

from typing import Callable

import redis as redis_py

from ..connection.scripts import Script
from ..keys import Keys
from ..log import logger
from ..payload import dumps
from . import Entry, due_ticks, last_tick, next_tick

#: seconds a leader's lease lasts without renewal; bounds how long the fleet runs leaderless
LEASE_TTL = 5.0
#: seconds after its time a tick still counts as on time (run), not missed (``missed`` policy)
LATE_AFTER = 30.0
#: seconds a per-tick claim key lives: longer than any takeover, so a claim outlives its race
CLAIM_TTL = 600.0
#: ticks of one entry enqueued in one call at most (a tiny ``every`` cannot stall the loop)
MAX_TICKS_PER_CALL = 100

#: the longest lease a leader takes (the bound the config puts on ``periodic_lease``): a lease
#: key whose TTL is longer was not written by a leader
LONGEST_LEASE = 60.0

# KEYS: lease key. ARGV: identity, ttl ms, longest lease ms. Renews the lease for its holder;
# takes it when it is free or when the key is none a leader writes: not a string, no TTL, or a
# TTL beyond any lease (set by hand or by another program, it would stop periodic jobs for
# good). Returns 1 renewed, 2 taken, 3 taken over such a key, 0 another leader holds it.
LEAD_SCRIPT = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'string' then
  if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
  end
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 and ttl <= tonumber(ARGV[3]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if kind == 'none' then return 2 end
return 3
"""

# KEYS: lease key. ARGV: identity. Frees the lease only for its holder.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: tick key, cursor hash. ARGV: identity, ttl ms, entry name, tick.
CLAIM_SCRIPT = """
local cursor = redis.call('HGET', KEYS[2], ARGV[3])
if cursor and tonumber(cursor) >= tonumber(ARGV[4]) then return 0 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return 1
"""

# KEYS: tick key, cursor hash. ARGV: identity, entry name, tick, cursor before the claim.
UNCLAIM_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3] then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
end
return 1
"""

# KEYS: cursor hash. ARGV: entry name, tick. Moves the cursor forward only.
ADVANCE_SCRIPT = """
local cursor = redis.call('HGET', KEYS[1], ARGV[1])
if cursor and tonumber(cursor) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
LEAD, RELEASE, CLAIM, UNCLAIM, ADVANCE = (
    Script(text) for text in (LEAD_SCRIPT, RELEASE_SCRIPT, CLAIM_SCRIPT, UNCLAIM_SCRIPT,
                              ADVANCE_SCRIPT))


def tick_text(tick: float) -> str:
    """A tick as it appears in keys and the cursor: ``1767225600`` or ``1767225600.5``."""
    return f"{tick:.6f}".rstrip("0").rstrip(".")


class Leader:
    """A lease on ``forkq:periodic:leader``, a string with a TTL (``LEAD_SCRIPT``): taken when
    free, renewed only by its holder, replaced when no leader wrote it."""

    def __init__(self, keys: Keys, identity: str, ttl: float = LEASE_TTL) -> None:
        self.keys = keys
        self.identity = identity
        self.ttl_ms = int(ttl * 1000)
        #: host-clock time until which this process may act as leader without renewing
        self.valid_until = 0.0
        #: a replaced lease key was logged (once: a writer that keeps planting it must not
        #: flood the log)
        self._replaced_logged = False

    def try_lead(self, redis: redis_py.Redis, now: float) -> bool:
        """Renew the lease if held, else take it if free; True while this process leads."""
        key = self.keys.periodic_leader
        longest_ms = max(int(LONGEST_LEASE * 1000), self.ttl_ms)
        outcome = LEAD(redis, [key], [self.identity, self.ttl_ms, longest_ms])
        if outcome == 3 and not self._replaced_logged:
            self._replaced_logged = True
            logger.warning("periodic: %s held a value no leader wrote (not a string, no TTL or "
                           "a TTL beyond %g s); replaced it. Something else writes there: keep "
                           "producers to the ACL rule of the docs' Production Redis page "
                           "(logged once)", key,
                           longest_ms / 1000)
        if outcome in (2, 3):
            logger.info("periodic: %s is now the leader", self.identity)
        held = outcome != 0
        self.valid_until = now + self.ttl_ms / 1000 if held else 0.0
        return held

    def is_leader(self, now: float) -> bool:
        return now < self.valid_until

    def release(self, redis: redis_py.Redis) -> bool:
        """At a clean stop: free the lease at once (only if still ours) for the next leader."""
        self.valid_until = 0.0
        return RELEASE(redis, [self.keys.periodic_leader], [self.identity]) == 1


def leader_identity(redis: redis_py.Redis, keys: Keys) -> str | None:
    """Who leads now (for the web UI, metrics and ``forkqctl status``)."""
    return redis.get(keys.periodic_leader)


def claim_tick(redis: redis_py.Redis, keys: Keys, entry: Entry, tick: float, identity: str,
               ttl: float = CLAIM_TTL) -> bool:
    """Claim one tick before enqueueing it; False if it was claimed or handled already."""
    text = tick_text(tick)
    return CLAIM(redis, [keys.periodic_tick(entry.name, text), keys.periodic_cursor],
                 [identity, int(ttl * 1000), entry.name, text]) == 1


class PeriodicScheduler:
    """Enqueues due ticks while this process leads; see the module docstring for the rules.

    ``enqueue(entry, tick)`` pushes the job (merging ``periodic.periodic_fields``) and returns
    its jid, or None when a unique lock refused it."""

    def __init__(self, entries: list[Entry], keys: Keys, identity: str,
                 enqueue: Callable[[Entry, float], str | None], *, lease_ttl: float = LEASE_TTL,
                 late_after: float = LATE_AFTER, claim_ttl: float = CLAIM_TTL) -> None:
        self.entries = list(entries)
        self.keys = keys
        self.enqueue = enqueue
        self.leader = Leader(keys, identity, lease_ttl)
        self.late_after = late_after
        self.claim_ttl = claim_ttl
        #: entry name → the next tick last written to the state hash (written on change only)
        self._next_written: dict[str, float | None] = {}
        #: names of entries whose failing enqueue was logged (again only after one succeeds)
        self._failing: set[str] = set()

    def tick(self, redis: redis_py.Redis, now: float) -> list[tuple[Entry, float, str | None]]:
        """Enqueue every due tick if this process leads; returns (entry, tick, jid) enqueued."""
        if not self.entries or not self.leader.try_lead(redis, now):
            self._next_written.clear()
            return []
        names = [entry.name for entry in self.entries]
        cursors = redis.hmget(self.keys.periodic_cursor, names)
        enqueued: list[tuple[Entry, float, str | None]] = []
        for entry, cursor in zip(self.entries, cursors):
            if cursor is None:
                redis.hsetnx(self.keys.periodic_cursor, entry.name, tick_text(now))
            else:
                self._run_entry(redis, entry, float(cursor), now, enqueued)
            self._write_next(redis, entry, now)
        return enqueued

    def stop(self, redis: redis_py.Redis) -> None:
        """Release the lease at a clean stop, so another master leads without waiting."""
        self.leader.release(redis)

    def _run_entry(self, redis, entry: Entry, cursor: float, now: float, enqueued: list) -> None:
        horizon = now - self.late_after
        late = last_tick(entry, horizon)
        if late is not None and late > cursor:
            if entry.missed == "once":
                if not self._fire(redis, entry, late, cursor, now, enqueued):
                    return
                logger.warning("periodic %r: ticks up to %s passed with no leader; enqueued "
                               "the latest once (missed: once)", entry.name, tick_text(late))
            else:
                ADVANCE(redis, [self.keys.periodic_cursor], [entry.name, tick_text(late)])
                logger.warning("periodic %r: ticks up to %s passed with no leader; skipped "
                               "(missed: skip)", entry.name, tick_text(late))
            cursor = late
        for tick in due_ticks(entry, max(cursor, horizon), now, MAX_TICKS_PER_CALL):
            if not self._fire(redis, entry, tick, cursor, now, enqueued):
                return
            cursor = tick

    def _fire(self, redis, entry: Entry, tick: float, previous: float, now: float,
              enqueued: list) -> bool:
        """Claim and enqueue one tick; False when the enqueue failed (undone, retried later)."""
        if not claim_tick(redis, self.keys, entry, tick, self.leader.identity, self.claim_ttl):
            return True
        try:
            jid = self.enqueue(entry, tick)
        except Exception:
            self._unclaim(redis, entry, tick, previous)
            if entry.name not in self._failing:  # once, not at every call while it fails
                self._failing.add(entry.name)
                logger.exception("periodic %r: enqueue for tick %s failed; it is tried again "
                                 "at each call (logged again only after one succeeds)",
                                 entry.name, tick_text(tick))
            return False
        if entry.name in self._failing:
            self._failing.discard(entry.name)
            logger.info("periodic %r: enqueue works again (tick %s)", entry.name,
                        tick_text(tick))
        # The last run and the next tick in one write: a reader (forkqctl status, the web UI)
        # never sees the new last run beside the old next tick.
        upcoming = next_tick(entry, now)
        redis.hset(self.keys.periodic_state, mapping={
            f"{entry.name}:last": dumps({"tick": tick, "jid": jid, "at": now}),
            f"{entry.name}:next": next_text(upcoming)})
        self._next_written[entry.name] = upcoming
        enqueued.append((entry, tick, jid))
        return True

    def _unclaim(self, redis, entry: Entry, tick: float, previous: float) -> None:
        text = tick_text(tick)
        UNCLAIM(redis, [self.keys.periodic_tick(entry.name, text), self.keys.periodic_cursor],
                [self.leader.identity, entry.name, text, tick_text(previous)])

    def _write_next(self, redis, entry: Entry, now: float) -> None:
        upcoming = next_tick(entry, now)
        if self._next_written.get(entry.name, -1.0) != upcoming:
            redis.hset(self.keys.periodic_state, f"{entry.name}:next", next_text(upcoming))
            self._next_written[entry.name] = upcoming


def next_text(upcoming: float | None) -> str:
    """The state hash's ``next`` field: the tick, or empty when none is coming."""
    return "" if upcoming is None else tick_text(upcoming)


def master_pid(identity: str | None) -> int | None:
    """The master's pid in a ``hostname:pid:hex`` identity; None if it holds none."""
    parts = (identity or "").rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None

