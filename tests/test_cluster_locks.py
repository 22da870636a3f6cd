"""Unique jobs, periodic jobs, limiters, cancelling and resumable jobs in the cluster layout,
on a real Redis Cluster of 3 primaries and 3 replicas (``cluster_nodes.py``) with real workers
and ``forkq start`` masters."""

from __future__ import annotations

import json
import logging
import time

import pytest

import control_jobs
import flow_jobs
import forkq
import iterable_jobs
from forkq import client as forkq_client
from forkq import limiter
from forkq.flow import unique
from forkq.keys import ClusterKeys
from forkq.periodic.leader import master_pid
from forkq.supervisor.preflight import check_redis as preflight
from helpers import LogLines, wait_for
from test_cluster import cluster_master  # noqa: F401 (the fixture)

KEYS = ClusterKeys()


def queues_on_two_primaries(client) -> tuple[str, str]:
    """Two queue names whose slots are on different primaries."""
    first = client.get_node_from_key(KEYS.queue("u0")).name
    other = next(f"u{i}" for i in range(1, 100)
                 if client.get_node_from_key(KEYS.queue(f"u{i}")).name != first)
    return "u0", other


# --- unique jobs

def test_a_unique_lock_lives_in_its_queues_slot(cluster):
    client = cluster.client()
    assert client.keyslot(KEYS.unique("d", "mail")) == client.keyslot(KEYS.queue("mail"))
    moved = unique.moved({"queue": "a", "unique_digest": "d"}, "b")
    assert moved == {"queue": "b", "unique_queue": "a"}
    assert unique.lock_queue({"queue": "b", **moved}) == "a"
    assert unique.moved({"queue": "a"}, "b") == {"queue": "b"}


def test_a_duplicate_is_refused_until_the_first_succeeds(cluster, start_worker):
    one, two = queues_on_two_primaries(cluster.client())
    redis = forkq_client.default().redis
    first = flow_jobs.UniqueSuccess.set(queue=one, result_ttl=60).perform_async(1)
    assert first is not None
    assert flow_jobs.UniqueSuccess.set(queue=one, result_ttl=60).perform_async(1) is None
    assert flow_jobs.UniqueSuccess.set(queue=two).perform_async(1) is not None  # per queue
    assert flow_jobs.UniqueSuccess.set(queue=two).perform_in(600, 5) is not None
    assert flow_jobs.UniqueSuccess.set(queue=two).perform_in(600, 5) is None
    assert redis.zcard(KEYS.schedule_for(two)) == 1 and two in redis.smembers(KEYS.queues)
    assert len(flow_jobs.UniqueSuccess.set(queue=one).perform_bulk([[1], [2], [2]])) == 1
    assert redis.llen(KEYS.queue(one)) == 2 and redis.llen(KEYS.queue(two)) == 1
    # the refused duplicate's result record, written in the meta slot ahead of the script,
    # was taken back: only the first job's stands
    records = [key for node in cluster.primaries() for key in node.client().keys("*result*")]
    assert records == [KEYS.result(first)]
    lock = unique.digest(flow_jobs.UniqueSuccess.wire_name(), one, [1])
    assert unique.holder(redis, KEYS, lock, one) == first
    start_worker(redis_url=cluster.url, queues=[one, two])
    wait_for(lambda: redis.llen("flow:runs") == 3, message="the three unique jobs run")
    assert redis.lrange("flow:lock_at_start", 0, -1) == ["held"] * 3
    wait_for(lambda: unique.holder(redis, KEYS, lock, one) is None,
             message="the lock released at success")
    assert flow_jobs.UniqueSuccess.set(queue=one).perform_async(1) is not None


def test_a_retry_to_another_queue_releases_the_lock_of_the_first(cluster, start_worker):
    one, two = queues_on_two_primaries(cluster.client())
    redis = forkq_client.default().redis
    jid = flow_jobs.FailOnce.set(queue=one, retry_queue=two).perform_async(1)
    lock = unique.digest(flow_jobs.FailOnce.wire_name(), one, [1])
    start_worker(redis_url=cluster.url, queues=[one, two], poll_interval=0.05)
    wait_for(lambda: redis.lrange("flow:runs", 0, -1) == [jid],
             message="the retry run from the other queue")
    assert redis.lrange("flow:lock_at_start", 0, -1) == ["held", "held"]
    wait_for(lambda: unique.holder(redis, KEYS, lock, one) is None,
             message="the first queue's lock released at success")


def test_a_dead_unique_job_releases_its_lock(cluster, start_worker):
    redis = forkq_client.default().redis
    flow_jobs.AlwaysFails.set(queue="doomed").perform_async(1)
    lock = unique.digest(flow_jobs.AlwaysFails.wire_name(), "doomed", [1])
    assert unique.holder(redis, KEYS, lock, "doomed") is not None
    start_worker(redis_url=cluster.url, queues=["doomed"])
    wait_for(lambda: redis.zcard(KEYS.dead) == 1, message="the dead job")
    dead = json.loads(redis.zrange(KEYS.dead, 0, 0)[0])
    assert dead["unique_digest"] == lock
    wait_for(lambda: unique.holder(redis, KEYS, lock, "doomed") is None,
             message="the lock released at death")


# --- periodic jobs

PING = {"name": "ping", "class": "e2e_jobs.Record", "every": 1, "queue": "ticks"}


def ticks(redis) -> list[float]:
    """The ticks enqueued on ``ticks`` (no master consumes it), oldest first."""
    return [json.loads(text)["periodic"]["tick"]
            for text in reversed(redis.lrange(KEYS.queue("ticks"), 0, -1))]


def test_start_accepts_periodic_entries(cluster, make_config):
    preflight(make_config(redis_url=cluster.url, metrics={"port": None}, periodic=[PING]))


@pytest.mark.slow
@pytest.mark.fault
def test_two_masters_enqueue_each_tick_once_across_a_kill_9_of_the_leader(cluster_master):
    masters = [cluster_master(processes=1, concurrency=1, periodic=[PING], periodic_lease=1)
               for _ in range(2)]
    redis = forkq_client.default().redis
    leader = lambda: master_pid(redis.get(KEYS.periodic_leader))  # noqa: E731
    first = next(m for m in masters if m.pid == wait_for(leader, 15, message="a leader"))
    wait_for(lambda: len(ticks(redis)) >= 3, 10, message="3 ticks from the first leader")
    first.proc.kill()
    first.proc.wait()
    survivor = next(master for master in masters if master is not first)
    wait_for(lambda: leader() == survivor.pid, 10, message="the survivor leading")
    seen = len(ticks(redis))
    wait_for(lambda: len(ticks(redis)) >= seen + 3, 10, message="3 ticks from the new leader")
    stamps = ticks(redis)
    assert len(set(stamps)) == len(stamps), f"a tick enqueued twice: {stamps}"
    assert stamps == sorted(stamps) and (stamps[-1] - stamps[0] + 1) - len(stamps) <= 1
    state = json.loads(redis.hget(KEYS.periodic_state, "ping:last"))
    assert state["tick"] <= stamps[-1] and redis.hget(KEYS.periodic_cursor, "ping")


# --- limiters

def test_each_limiter_has_its_own_slot_and_admits_up_to_its_limit(cluster):
    client = cluster.client()
    slots = {client.keyslot(KEYS.limiter(kind, "api")) for kind in ("concurrent", "window")}
    assert slots == {client.keyslot("{l:api}")}
    owners = {client.get_node_from_key(KEYS.limiter("bucket", f"b{i}")).name for i in range(12)}
    assert len(owners) == 3  # limiters spread over the primaries
    tokens = limiter.bucket("cluster-bucket", 1, 60)
    with tokens:
        pass
    with pytest.raises(limiter.OverLimit) as over:
        with tokens:
            pass
    assert 0 < over.value.retry_in <= 60
    assert client.hget(KEYS.limiter("bucket", "cluster-bucket"), "tokens") is not None


def spans(redis) -> list[tuple[float, float]]:
    return [tuple(map(float, span.split()[1:])) for span in redis.lrange("flow:spans", 0, -1)]


@pytest.fixture
def info_lines():
    """forkq's log lines at INFO (where over-limit reschedules are logged)."""
    forkq_logger = logging.getLogger("forkq")
    level = forkq_logger.level
    forkq_logger.setLevel(logging.INFO)
    try:
        with LogLines() as lines:
            yield lines
    finally:
        forkq_logger.setLevel(level)


def test_a_concurrent_limiter_holds_jobs_to_its_limit(cluster, start_worker, info_lines):
    redis = forkq_client.default().redis
    jids = flow_jobs.Paired.set(queue="paired").perform_bulk([[i] for i in range(8)])
    start_worker(redis_url=cluster.url, queues=["paired"], concurrency=4, poll_interval=0.05)
    wait_for(lambda: sorted(redis.lrange("flow:runs", 0, -1)) == sorted(jids), timeout=20,
             message="every limited job run")
    assert any(line.startswith("over limit flow-pair; again in ") for line in info_lines)
    starts = sorted(spans(redis))
    for start, _ in starts:  # never more than two inside the limited block at once
        assert sum(1 for s, f in starts if s <= start < f) <= 2
    assert redis.zcard(KEYS.retry_for("paired")) == 0 and redis.zcard(KEYS.dead) == 0


def test_an_over_limit_job_is_rescheduled_in_its_queues_slot_under_basic_fetch(
        cluster, start_worker):
    redis = forkq_client.default().redis
    jids = [flow_jobs.Windowed.set(queue="windowed").perform_async(i) for i in range(2)]
    start_worker(redis_url=cluster.url, queues=["windowed"], concurrency=2, fetch="basic",
                 poll_interval=0.05)
    wait_for(lambda: sorted(redis.lrange("flow:runs", 0, -1)) == sorted(jids), timeout=10,
             message="both windowed jobs run")
    times = sorted(start for start, in spans(redis))
    assert int(times[1] // 2) == int(times[0] // 2) + 1  # the second in the next window
    assert redis.zcard(KEYS.retry_for("windowed")) == 0 and redis.zcard(KEYS.dead) == 0


# --- cancelling

def held_jobs(cluster) -> list[str]:
    """The private lists that hold a job, on every primary."""
    held = []
    for node in cluster.primaries():
        with node.client() as client:
            held += [key for key in client.keys("*inflight*") if client.llen(key)]
    return held


def test_queued_scheduled_and_retrying_jobs_are_removed_from_their_queues_slots(cluster):
    one, two = queues_on_two_primaries(cluster.client())
    redis = forkq_client.default().redis
    other = control_jobs.Plain.set(queue=one).perform_async(0)
    queued = control_jobs.Plain.set(queue=one, unique_for=60, result_ttl=60).perform_async(1)
    later = control_jobs.Plain.set(queue=two, result_ttl=60).perform_in(600, 2)
    failed = {"class": "control_jobs.Plain", "args": [3], "jid": "c" * 24, "queue": two,
              "retry": True, "retry_count": 0, "error_class": "ValueError"}
    redis.zadd(KEYS.retry_for(two), {json.dumps(failed): time.time() + 600})
    assert forkq.cancel(queued) == "queued"
    assert [json.loads(t)["jid"] for t in redis.lrange(KEYS.queue(one), 0, -1)] == [other]
    lock = unique.digest(control_jobs.Plain.wire_name(), one, [1])
    assert unique.holder(redis, KEYS, lock, one) is None  # released with the job
    assert forkq.cancel(later) == "scheduled" and redis.zcard(KEYS.schedule_for(two)) == 0
    assert forkq.cancel("c" * 24) == "retry" and redis.zcard(KEYS.retry_for(two)) == 0
    assert forkq.result(queued).status == forkq.result(later).status == "cancelled"
    assert forkq.cancel("d" * 24) is None
    assert redis.get(KEYS.cancelled) == "3" and redis.zcard(KEYS.cancels) == 1  # d's mark


def test_a_job_pushed_after_its_cancel_is_dropped_before_it_starts(cluster, start_worker):
    redis = forkq_client.default().redis
    jid = "e" * 24
    assert forkq.cancel(jid) is None
    redis.lpush(KEYS.queue("late"), json.dumps({
        "class": "control_jobs.Plain", "args": [9], "jid": jid, "queue": "late",
        "retry": True, "result_ttl": 60}))
    start_worker(redis_url=cluster.url, queues=["late"])
    wait_for(lambda: getattr(forkq.result(jid), "status", None) == "cancelled",
             message="dropped as cancelled")
    assert redis.lrange("control:runs", 0, -1) == [] and redis.llen(KEYS.queue("late")) == 0


@pytest.mark.slow
def test_a_running_job_is_interrupted_and_acknowledged(cluster, start_worker):
    redis = forkq_client.default().redis
    start_worker(redis_url=cluster.url, queues=["sleepy"], concurrency=2)
    jid = control_jobs.Sleeper.set(queue="sleepy", unique_for=120,
                                   result_ttl=60).perform_async(60)
    wait_for(lambda: redis.lrange("control:started", 0, -1) == [jid], message="the job started")
    assert forkq.cancel(jid) == "running"
    assert forkq.result(jid, wait=10).status == "cancelled"
    assert redis.lrange("control:cleaned", 0, -1) == [f"{jid} True"]
    lock = unique.digest(control_jobs.Sleeper.wire_name(), "sleepy", [60])
    # released after the result record is written (``cancel.ended_cancelled``)
    wait_for(lambda: unique.holder(redis, KEYS, lock, "sleepy") is None,
             message="the lock released")
    wait_for(lambda: not held_jobs(cluster), message="acknowledged")
    assert redis.zcard(KEYS.retry_for("sleepy")) == 0 and redis.zcard(KEYS.dead) == 0


# --- resumable jobs

def test_a_resumable_job_retried_resumes_from_its_cursor(cluster, start_worker):
    redis = forkq_client.default().redis
    jid = iterable_jobs.Export.set(queue="export").perform_async(10, 0, 4)
    start_worker(redis_url=cluster.url, queues=["export"], poll_interval=0.05)
    wait_for(lambda: len(redis.lrange("iter:items", 0, -1)) == 10, message="10 items")
    assert [int(n) for n in redis.lrange("iter:items", 0, -1)] == list(range(10))  # 0-3 once
    wait_for(lambda: json.loads(redis.get(KEYS.iteration(jid)) or "{}").get("done"),
             message="the cursor record marked done")


@pytest.mark.slow
def test_a_job_ignoring_its_cancel_is_ended_as_cancelled_and_its_worker_retired(
        cluster, start_worker):
    redis = forkq_client.default().redis
    jid = control_jobs.Stubborn.set(queue="stubborn", result_ttl=60).perform_async(60)
    worker = start_worker(redis_url=cluster.url, queues=["stubborn"], concurrency=1)
    wait_for(lambda: redis.lrange("control:started", 0, -1) == [jid], message="the job started")
    assert forkq.cancel(jid) == "running"
    assert forkq.result(jid, wait=15).status == "cancelled"
    wait_for(lambda: worker.retired, timeout=15, message="the worker retired")
    assert redis.zcard(KEYS.retry_for("stubborn")) == 0 and redis.zcard(KEYS.dead) == 0
    assert not held_jobs(cluster)
