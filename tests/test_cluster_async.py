"""Coroutine jobs (``async def perform``) in the cluster layout, on a real Redis Cluster of 3
primaries and 3 replicas (``cluster_nodes.py``): the event loop's private list is per queue, in
the queue's hash slot (``ClusterKeys.inflight_async``); in-process workers, then real ``forkq
start`` children killed and stopped with real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

import forkq
from async_jobs import Flaky, Nap
from forkq import aio
from forkq import client as forkq_client
from forkq.api import Api
from forkq.keys import ClusterKeys
from helpers import wait_for
from test_cluster import cluster_master  # noqa: F401 (a fixture: forkq start on the cluster)

KEYS = ClusterKeys()


def started(redis) -> dict[str, int]:
    return {jid: int(count) for jid, count in redis.hgetall("async:started").items()}


def held_lists(cluster) -> list[str]:
    """The private lists that hold jobs, on every primary."""
    return [key for node in cluster.primaries() for key in node.client().keys("*inflight*")
            if node.client().llen(key)]


def test_the_event_loops_list_is_in_its_queues_slot_and_recovered_with_it(cluster):
    client = cluster.client()
    for name in ("default", "mail"):
        placed = (KEYS.inflight_async("h:1:0", name), KEYS.queue_inflight(name, "h:1:0", 0),
                  KEYS.queue(name))
        assert len({client.keyslot(key) for key in placed}) == 1
        assert KEYS.home_queue(KEYS.inflight_async("h:1:0", name)) == name
    assert KEYS.inflight_async("h:1:0", "mail") in KEYS.private_lists("h:1:0", 2, ["mail"])
    with pytest.raises(TypeError, match="an event loop list per queue"):
        KEYS.inflight_async("h:1:0")


@pytest.mark.parametrize("fetch", ["reliable", "basic"])
def test_coroutine_jobs_run_from_queues_on_every_primary_and_keep_results(cluster, start_worker,
                                                                          fetch):
    names = [f"q{i}" for i in range(6)]
    client = cluster.client()
    assert len({client.get_node_from_key(KEYS.queue(name)).name for name in names}) == 3
    naps = {name: [Nap.set(queue=name, result_ttl=60).perform_async(0.05) for _ in range(3)]
            for name in names}
    flaky = Flaky.set(queue="q1", result_ttl=60).perform_async("v")
    start_worker(redis_url=cluster.url, queues=names, fetch=fetch, concurrency=2)
    for jid in [jid for jids in naps.values() for jid in jids]:
        result = forkq.results.get(jid, wait=10)
        assert (result.status, result.value) == ("succeeded", "slept 0.05")
    result = forkq.results.get(flaky, wait=10)
    assert (result.status, result.value, result.attempts) == ("succeeded", "v", 2)
    assert [error["message"] for error in result.errors] == ["first run of v"]
    api = Api(forkq_client.default().redis, KEYS)
    wait_for(lambda: (api.stats()["processed"], api.stats()["failed"]) == (20, 1),
             message="every coroutine job counted")
    redis = forkq_client.default().redis
    assert redis.get(KEYS.queue_stat_keys("q1", "")[0]) == "5"  # its queue's own counter
    assert api.stats()["enqueued"] == api.stats()["retries"] == 0
    wait_for(lambda: not held_lists(cluster), message="every private list acknowledged")


def test_the_asyncio_client_pushes_to_and_awaits_results_from_the_cluster(cluster,
                                                                          start_worker):
    async def scenario():
        try:
            jids = [await aio.perform_async(Nap, 0.01, queue=name, result_ttl=60)
                    for name in ("q0", "q1", "q2")]
            return [await forkq.aresult(jid, wait=10) for jid in jids]
        finally:
            await aio.aclose()

    start_worker(redis_url=cluster.url, queues=["q0", "q1", "q2"])
    results = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert [(result.status, result.value) for result in results] == [("succeeded",
                                                                        "slept 0.01")] * 3


@pytest.mark.slow
@pytest.mark.fault
def test_a_child_killed_mid_coroutine_job_is_replaced_and_its_jobs_recovered(cluster,
                                                                             cluster_master):
    master = cluster_master(processes=1, concurrency=2, heartbeat_ttl=60,
                            queues=["alpha", "beta"], require=["async_jobs"])
    old = master.ready_pids(1)[0]
    redis = forkq_client.default().redis
    jids = [Nap.set(queue=name).perform_async(30) for name in ("alpha", "beta") for _ in range(4)]
    wait_for(lambda: len(started(redis)) == 8, 10, message="all 8 running")
    loop_lists = sorted(key for key in held_lists(cluster) if key.endswith(":async"))
    assert [KEYS.home_queue(key) for key in loop_lists] == ["alpha", "beta"]
    assert [redis.llen(key) for key in loop_lists] == [4, 4]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: [p for p in master.ready_pids(1) if p != old], 15, message="replacement")
    wait_for(lambda: all(started(redis).get(jid) == 2 for jid in jids), 15,
             message="every coroutine job recovered and started again")
    assert "recovered 8 job(s) left by this slot's previous process" in master.log()


@pytest.mark.slow
@pytest.mark.fault
def test_term_pushes_coroutine_jobs_back_to_their_queues(cluster, cluster_master):
    master = cluster_master(processes=1, concurrency=2, timeout=1, queues=["alpha", "beta"],
                            require=["async_jobs"])
    master.ready_pids(1)
    redis = forkq_client.default().redis
    quick = Nap.set(queue="alpha").perform_async(0.3)
    slow = {name: [Nap.set(queue=name).perform_async(30) for _ in range(3)]
            for name in ("alpha", "beta")}
    wait_for(lambda: len(started(redis)) == 7, 10, message="all running")
    master.send(signal.SIGTERM)
    assert master.wait_exit(20) == 0
    assert redis.hgetall("async:runs") == {quick: "1"}
    for name, jids in slow.items():
        queued = [json.loads(text)["jid"] for text in redis.lrange(KEYS.queue(name), 0, -1)]
        assert sorted(queued) == sorted(jids)
    assert held_lists(cluster) == []
    assert "6 coroutine job(s) cancelled and pushed back" in master.log()
