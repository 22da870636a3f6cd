"""Priority within a queue and fair shares in the cluster layout, on a real cluster of 3
primaries and 3 replicas (``cluster_nodes.py``): a queue's levels, tenants, turns and bell
share its hash slot, and two workers start jobs in the order the default layout gives, in both
fetch modes."""

from __future__ import annotations

import time

import pytest

import priority_jobs
from forkq import client as forkq_client
from forkq.api import Api
from forkq.flow import fairlimit, placement
from forkq.keys import ClusterKeys
from forkq.worker import fetch, recovery
from forkq.worker.poller import Poller
from forkq.worker.services import Services
from helpers import most_at_once, wait_for
from test_fairlimit import spans
from test_priority import assert_each_runner_started_by_priority, push
from test_worker import spawn, stop_all

KEYS = ClusterKeys()
Record, Span = priority_jobs.Record, priority_jobs.Span


def test_a_queues_levels_tenants_turns_and_bell_share_its_slot(cluster, make_config):
    push([5, -2])
    Record.set(fair_key="t1").perform_async("fair")
    Record.set(priority=3).perform_bulk([["bulk-a"], ["bulk-b"]])
    Record.set(priority=9).perform_in(60, "scheduled")
    Record.set(fair_key="t2").perform_in(60, "scheduled")
    poller = Poller(Services.build(make_config(redis_url=cluster.url), cluster.url, "t:0:0"),
                    recovery=None)
    assert poller.enqueue_due(now=time.time() + 3600) == 2
    redis = cluster.client()
    keys = [KEYS.queue("default"), KEYS.level("default", 5), KEYS.level("default", -2),
            KEYS.levels("default"), KEYS.tenant("default", "t1"), KEYS.turns("default"),
            KEYS.turn("default"), KEYS.fair_running("default"), KEYS.bell("default")]
    assert len({redis.keyslot(key) for key in keys}) == 1
    assert redis.zrange(KEYS.levels("default"), 0, -1) == ["-2", "3", "5", "9"]
    assert redis.llen(KEYS.level("default", 3)) == 2
    assert redis.zrange(KEYS.turns("default"), 0, -1) == ["t1", "t2"]
    assert redis.smembers(KEYS.prioritized) == {"default"} == redis.smembers(KEYS.fair)
    queue = Api(forkq_client.default().redis, KEYS).queue("default")
    assert queue.size == 7 and queue.levels[3] == 2 and queue.tenants(5)[0] == 2


def test_put_backs_go_to_the_front_of_the_level_or_tenant_in_the_queues_slot(cluster):
    """A release (graceful stop) and a recovery (kill -9) of placed jobs: in one slot, the
    guard sets (meta slot) left alone."""
    push([4, 4])
    Record.set(fair_key="t1").perform_async("t1:0")
    redis = forkq_client.default().redis
    private = KEYS.queue_inflight("default", "h:1:0", 0)
    level, tenant = KEYS.level("default", 4), KEYS.tenant("default", "t1")
    first, fair = redis.rpop(level), redis.rpop(tenant)
    redis.rpush(private, first, fair)
    redis.delete(KEYS.levels("default"), KEYS.turns("default"))
    assert recovery.MOVE_ONE(redis, *recovery.move_one(
        KEYS, private, placement.place_of_text(fair, "default"), fair)) == 1
    assert redis.lrange(tenant, 0, -1) == [fair] and redis.zrange(KEYS.turns("default"), 0,
                                                                  -1) == ["t1"]
    assert fetch.release(redis, KEYS, private, [fetch.Fetched("default", first)], None,
                         True) == 1
    assert redis.lrange(level, -1, -1) == [first] and redis.zrange(KEYS.levels("default"), 0,
                                                                   -1) == ["4"]
    assert redis.llen(private) == 0


@pytest.mark.slow
@pytest.mark.parametrize("fetch", ["reliable", "basic"])
def test_two_workers_start_jobs_by_priority_fifo_within_a_level(cluster, start_worker, fetch):
    levels = [0, 2, -5, 2, 7, 0, -5, 7, 2, 0] * 2
    # 3 s of work in all: the first worker must not drain them all before the second starts
    push(levels, 0.15)
    redis = forkq_client.default().redis
    for _ in range(2):
        start_worker(redis_url=cluster.url, concurrency=1, fetch=fetch)
    wait_for(lambda: redis.llen("prio:started") == len(levels), timeout=30,
             message="every job started")
    assert_each_runner_started_by_priority(redis)


@pytest.mark.slow
@pytest.mark.parametrize("fetch", ["reliable", "basic"])
def test_two_worker_processes_run_at_most_the_limit_of_a_tenant_while_others_proceed(
        cluster, tmp_path, fetch):
    Span.set(fair_key="A", fair_limit=2).perform_bulk([[f"A{i}"] for i in range(10)])
    Span.set(fair_key="B").perform_bulk([[f"B{i}"] for i in range(10)])
    redis = forkq_client.default().redis
    workers = [spawn(tmp_path, cluster.url, f"w{i}.log", require=["priority_jobs"],
                     concurrency=3, queues=["other", "default"], fetch=fetch) for i in range(2)]
    try:
        wait_for(lambda: len(spans(redis)) == 20, timeout=30, message="every job ended")
        wait_for(lambda: fairlimit.running(redis, KEYS, "default") == {}, timeout=5,
                 message="A's count back to 0")
    finally:
        stop_all(workers, 15)
    a = [(s, e) for label, s, e in spans(redis) if label.startswith("A")]
    b = [(s, e) for label, s, e in spans(redis) if label.startswith("B")]
    assert most_at_once(a) == 2, a
    assert most_at_once(b) >= 3 and max(e for _, e in b) < max(e for _, e in a)
