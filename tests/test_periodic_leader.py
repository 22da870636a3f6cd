"""The periodic leader on the real Redis: lease, tick claims, missed ticks, takeover after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from forkq.api.periodic import read_state
from forkq.keys import Keys
from forkq.periodic import Entry
from forkq.periodic.leader import Leader, PeriodicScheduler, claim_tick, leader_identity
from helpers import LogLines, wait_for

KEYS = Keys()
T0 = 1_800_000_000.0  # a fixed clock: ticks are computed from the time given, not read


def recorder():
    calls = []

    def enqueue(entry, tick):
        calls.append((entry.name, tick))
        return f"jid{len(calls)}"
    return calls, enqueue


def test_one_leader_at_a_time_and_only_the_holder_renews_or_releases(redis):
    a, b = Leader(KEYS, "a"), Leader(KEYS, "b")
    assert a.try_lead(redis, T0) and a.is_leader(T0)
    assert not b.try_lead(redis, T0) and not b.is_leader(T0)
    assert a.try_lead(redis, T0 + 1)
    assert not b.release(redis)
    assert leader_identity(redis, KEYS) == "a"
    assert a.release(redis) and leader_identity(redis, KEYS) is None
    assert b.try_lead(redis, T0 + 2)


@pytest.mark.parametrize("plant", [
    lambda redis, key: redis.set(key, "intruder"),  # no TTL: would hold for good
    lambda redis, key: redis.set(key, "intruder", ex=10 ** 8),  # longer than any lease
    lambda redis, key: redis.delete(key) + redis.lpush(key, "x"),  # not a string
])
def test_a_lease_key_no_leader_wrote_is_replaced_and_logged_once(redis, plant):
    a = Leader(KEYS, "a")
    with LogLines() as lines:
        for second in range(3):
            plant(redis, KEYS.periodic_leader)
            assert a.try_lead(redis, T0 + second)
            assert leader_identity(redis, KEYS) == "a"
            assert 0 < redis.pttl(KEYS.periodic_leader) <= 5000
    assert len([line for line in lines if "no leader wrote" in line]) == 1


def test_a_lease_key_with_no_ttl_does_not_stop_periodic_jobs(redis):
    entry = Entry("e", "app.Job", every=10)
    calls, enqueue = recorder()
    scheduler = PeriodicScheduler([entry], KEYS, "a", enqueue)
    redis.set(KEYS.periodic_leader, "hostname:1:abcdef")
    scheduler.tick(redis, T0)
    scheduler.tick(redis, T0 + 25)
    assert [tick for _, tick in calls] == [T0 + 10, T0 + 20]


def test_a_lease_not_renewed_passes_to_another(redis):
    a, b = Leader(KEYS, "a", ttl=0.2), Leader(KEYS, "b", ttl=0.2)
    assert a.try_lead(redis, T0)
    assert not a.is_leader(T0 + 0.3)
    wait_for(lambda: b.try_lead(redis, T0), timeout=3, message="lease expiry")
    assert not a.try_lead(redis, T0)


def test_a_tick_is_claimed_once_and_never_behind_the_cursor(redis):
    entry = Entry("e", "app.Job", every=10)
    assert claim_tick(redis, KEYS, entry, T0 + 10, "a")
    assert not claim_tick(redis, KEYS, entry, T0 + 10, "b")
    redis.delete(KEYS.periodic_tick("e", str(int(T0 + 10))))
    assert not claim_tick(redis, KEYS, entry, T0 + 10, "b")
    assert not claim_tick(redis, KEYS, entry, T0, "b")
    assert claim_tick(redis, KEYS, entry, T0 + 20, "b")


def test_due_ticks_are_enqueued_once_by_the_leader_only(redis):
    entry = Entry("e", "app.Job", every=10)
    calls_a, enqueue_a = recorder()
    calls_b, enqueue_b = recorder()
    a = PeriodicScheduler([entry], KEYS, "a", enqueue_a)
    b = PeriodicScheduler([entry], KEYS, "b", enqueue_b)
    assert a.tick(redis, T0 + 1) == []  # first sight: the cursor starts now, no back-fill
    assert b.tick(redis, T0 + 25) == []
    fired = a.tick(redis, T0 + 25)
    assert [(e.name, tick, jid) for e, tick, jid in fired] == [("e", T0 + 10, "jid1"),
                                                             ("e", T0 + 20, "jid2")]
    assert a.tick(redis, T0 + 25) == [] and calls_b == []
    state = read_state(redis.hgetall(KEYS.periodic_state))["e"]
    assert state["last"] == {"tick": T0 + 20, "jid": "jid2", "at": T0 + 25}
    assert state["next"] == T0 + 30


@pytest.mark.parametrize("every_ms", [1100, 100])
def test_a_fractional_every_is_enqueued_at_each_of_its_ticks(redis, every_ms):
    """Called every 0.1 s over 24 s: each tick once, in order, none stuck behind the cursor."""
    entry = Entry("e", "app.Job", every=every_ms / 1000)
    calls, enqueue = recorder()
    scheduler = PeriodicScheduler([entry], KEYS, "a", enqueue)
    scheduler.tick(redis, T0)
    for step in range(1, 241):
        scheduler.tick(redis, T0 + step / 10)
    start, end = int(T0 * 1000) // every_ms + 1, int((T0 + 24) * 1000) // every_ms
    assert [tick for _, tick in calls] == [k * every_ms / 1000 for k in range(start, end + 1)]


@pytest.mark.parametrize("missed, expected", [
    ("skip", [T0 + 970, T0 + 980, T0 + 990, T0 + 1000]),
    ("once", [T0 + 960, T0 + 970, T0 + 980, T0 + 990, T0 + 1000]),
])
def test_missed_ticks_after_a_gap_follow_the_entry_policy(redis, missed, expected):
    entry = Entry("e", "app.Job", every=10, missed=missed)
    calls, enqueue = recorder()
    scheduler = PeriodicScheduler([entry], KEYS, "a", enqueue, late_after=35)
    scheduler.tick(redis, T0)
    scheduler.tick(redis, T0 + 1000)
    assert [tick for _, tick in calls] == expected
    assert all(isinstance(tick, float) for _, tick in calls)
    scheduler.tick(redis, T0 + 1001)
    assert len(calls) == len(expected)


def test_a_failed_enqueue_is_undone_and_tried_again(redis):
    entry = Entry("e", "app.Job", every=10)
    calls, enqueue = recorder()
    failing = [True]

    def flaky(entry, tick):
        if failing:
            failing.clear()
            raise ConnectionError("queue unreachable")
        return enqueue(entry, tick)

    scheduler = PeriodicScheduler([entry], KEYS, "a", flaky)
    scheduler.tick(redis, T0)
    assert scheduler.tick(redis, T0 + 12) == []
    assert [tick for _, tick, _ in scheduler.tick(redis, T0 + 13)] == [T0 + 10]


def test_a_failing_enqueue_is_logged_once_until_one_succeeds(redis):
    entry = Entry("e", "app.Job", every=10)
    calls, enqueue = recorder()
    failing = [True]
    tried = []

    def flaky(entry, tick):
        tried.append(tick)
        if failing:
            raise ConnectionError("queue unreachable")
        return enqueue(entry, tick)

    scheduler = PeriodicScheduler([entry], KEYS, "a", flaky)
    with LogLines() as lines:
        for second in (0, 12, 13, 14, 15):
            scheduler.tick(redis, T0 + second)
        assert len(tried) >= 3
        assert len([line for line in lines if "enqueue for tick" in line]) == 1
        failing.clear()
        assert scheduler.tick(redis, T0 + 16) != []
        failing.append(True)
        scheduler.tick(redis, T0 + 21)
        scheduler.tick(redis, T0 + 22)
        assert len([line for line in lines if "enqueue for tick" in line]) == 2


def test_a_clean_stop_hands_over_at_once(redis):
    entry = Entry("e", "app.Job", every=10)
    a = PeriodicScheduler([entry], KEYS, "a", recorder()[1])
    b = PeriodicScheduler([entry], KEYS, "b", recorder()[1])
    a.tick(redis, T0)
    a.stop(redis)
    b.tick(redis, T0)
    assert leader_identity(redis, KEYS) == "b"


@pytest.mark.slow
@pytest.mark.fault
def test_two_hosts_one_enqueue_per_tick_across_a_kill_9_of_the_leader(redis, redis_url):
    host = os.path.join(os.path.dirname(__file__), "periodic_host.py")
    procs = {}
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, host, redis_url])
        procs[f"host:{proc.pid}"] = proc
    try:
        first = wait_for(lambda: leader_identity(redis, KEYS), timeout=10, message="a leader")
        wait_for(lambda: redis.llen("test:periodic:enqueued") >= 3, timeout=10,
                 message="three ticks")
        procs[first].send_signal(signal.SIGKILL)
        procs[first].wait()
        second = wait_for(lambda: (leader_identity(redis, KEYS) or first) != first
                          and leader_identity(redis, KEYS), timeout=5, message="a takeover")
        count = redis.llen("test:periodic:enqueued")
        wait_for(lambda: redis.llen("test:periodic:enqueued") >= count + 3, timeout=10,
                 message="three ticks after the takeover")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    records = [json.loads(item) for item in redis.lrange("test:periodic:enqueued", 0, -1)]
    ticks = [record["tick"] for record in records]
    assert [tick for tick, n in Counter(ticks).items() if n > 1] == []
    assert ticks == sorted(ticks)
    expected = set(range(int(ticks[0]), int(ticks[-1]) + 1))
    assert len(expected - set(ticks)) <= 1, f"missed ticks: {sorted(expected - set(ticks))}"
    assert {record["identity"] for record in records} == {first, second}
    assert time.time() - ticks[-1] < 5
