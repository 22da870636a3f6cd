"""Sharded hot queues on a real Redis Cluster (``flow/shards.py``): one queue split into
lists on several primaries, pushed round-robin or by a shard key, drained by every worker."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

import async_jobs
import e2e_jobs
import jobs  # noqa: F401 (registers the jobs these tests run)
import forkq
from forkq import client as forkq_client
from forkq import config
from forkq.api import Api
from forkq.errors import ConfigError
from forkq.flow import pause, shards
from forkq.keys import MAX_SHARDS, ClusterKeys
from forkq.worker.poller import Poller
from forkq.worker.services import Services
from helpers import wait_for
from test_cluster import cluster_master  # noqa: F401 (a fixture)

KEYS = ClusterKeys()
SHARDED = [["media", {"shards": 4}]]


@pytest.fixture(autouse=True)
def fresh_counts():
    """The default client's shard counts are read anew in each test (a flushed cluster)."""
    forkq_client.default().shards = shards.ShardCounts()


def shard_lists(count: int = 4, name: str = "media") -> list[str]:
    return [KEYS.queue(shard) for shard in shards.shard_names(KEYS, name, count)]


def sizes(redis, count: int = 4) -> list[int]:
    return [redis.llen(key) for key in shard_lists(count)]


# --- configuration (pure)

def test_shards_are_read_from_queue_entries_and_bad_ones_refused_naming_queue_value_file():
    url = "redis+cluster://h:7000"
    loaded = config.from_mapping({"redis_url": url, "queues": [["media", 3, {"shards": 8}],
                                                                "mail"]}, "forkq.yml")
    assert loaded.queues == (config.Queue("media", 3, 8), config.Queue("mail"))
    assert not loaded.strict
    strict = config.from_mapping({"redis_url": url, "queues": [["media", {"shards": 2}]]})
    assert strict.strict and strict.queues == (config.Queue("media", 1, 2),)
    for bad in (0, MAX_SHARDS + 1, "x"):
        with pytest.raises(ConfigError, match=rf"forkq.yml: key 'queues' .*queue 'media': "
                                              rf"shards {bad!r}"):
            config.from_mapping({"redis_url": url, "queues": [["media", {"shards": bad}]]},
                                "forkq.yml")
    with pytest.raises(ConfigError, match=r"queue 'media': unknown option 'shard'"):
        config.from_mapping({"redis_url": url, "queues": [["media", {"shard": 2}]]})
    with pytest.raises(ConfigError, match=r"forkq.yml: queue 'media' has shards: 4, which only "
                                          r"the cluster layout runs"):
        config.from_mapping({"redis_url": "redis://h:6379/0",
                             "queues": [["media", {"shards": 4}]]}, "forkq.yml")
    with pytest.raises(ConfigError, match=r"queue 'a#1': '#' is not allowed"):
        config.from_mapping({"redis_url": url, "queues": ["a#1"]})
    for bad in ("", "two words", 7):
        with pytest.raises(TypeError, match=r"option 'shard_key' must be a non-empty string"):
            jobs.Record.set(shard_key=bad)


# --- placement

def test_shards_land_on_every_primary_and_each_keeps_its_keys_in_one_slot(cluster):
    client = cluster.client()

    def slot(key: str) -> int:  # the server's word, not the client's hash
        return int(client.execute_command("CLUSTER KEYSLOT", key))

    names = shards.shard_names(KEYS, "media", 8)
    assert names[0] == "media"  # shard 0 is the unsharded queue
    for name in names:
        slots = {slot(key) for key in (
            KEYS.queue(name), KEYS.schedule_for(name), KEYS.retry_for(name),
            KEYS.queue_inflight(name, "h:1:0", 3, 1), *KEYS.queue_stat_keys(name, "2026-01-01"))}
        assert len(slots) == 1
        assert KEYS.home_queue(KEYS.queue_inflight(name, "h:1:0", 0)) == name
    for queue in ("media", "thumbnails", "v1.2"):
        owners = {client.nodes_manager.get_node_from_slot(slot(KEYS.queue(name))).name
                  for name in shards.shard_names(KEYS, queue, 8)}
        assert len(owners) == 3, queue


# --- the push and the fetch

def test_round_robin_pushes_spread_over_the_shards_and_all_run(cluster, start_worker):
    redis = forkq_client.default().redis
    pause.pause(redis, KEYS, "media")  # pausing the queue holds every shard
    start_worker(redis_url=cluster.url, queues=SHARDED, concurrency=2)
    for index in range(20):
        jobs.Record.set(queue="media").perform_async(f"one-{index}")
    jobs.Record.set(queue="media").perform_bulk([[f"bulk-{i}"] for i in range(40)])
    assert sizes(redis) == [15, 15, 15, 15]
    api = Api(redis, KEYS)
    assert api.queue("media").size == 60
    assert api.queue("media").shard_sizes() == [15, 15, 15, 15]
    pause.resume(redis, KEYS, "media")
    wait_for(lambda: redis.llen("ran") == 60, message="60 jobs to run")
    assert sorted(redis.lrange("ran", 0, -1)) == sorted(
        [f"one-{i}" for i in range(20)] + [f"bulk-{i}" for i in range(40)])
    wait_for(lambda: api.stats()["processed"] == 60, message="the stats summed")


def test_a_shard_key_keeps_its_jobs_in_order_on_one_shard(cluster, start_worker):
    redis = forkq_client.default().redis
    pause.pause(redis, KEYS, "media")
    start_worker(redis_url=cluster.url, queues=SHARDED, concurrency=1)
    for index in range(12):
        jobs.Record.set(queue="media", shard_key="user-7").perform_async(index)
    jobs.Record.set(queue="media", shard_key="user-7").perform_bulk([[12], [13]])
    held = sizes(redis)
    assert sorted(held) == [0, 0, 0, 14]
    assert held.index(14) == shards.shard_of_key("user-7", 4)
    pause.resume(redis, KEYS, "media")
    wait_for(lambda: redis.llen("ran") == 14, message="14 jobs to run")
    assert redis.lrange("ran", 0, -1) == [str(i) for i in range(14)]


def test_a_push_to_a_queue_name_holding_a_hash_sign_is_refused(cluster):
    with pytest.raises(TypeError, match=r"queue 'media#1': '#' is not allowed"):
        jobs.Record.set(queue="media#1").perform_async(1)
    with pytest.raises(TypeError, match=r"queue 'media#1': '#' is not allowed"):
        jobs.Record.set(queue="media#1").perform_bulk([[1], [2]])
    assert forkq_client.default().redis.dbsize() == 0


def test_a_producer_before_any_worker_pushes_to_shard_zero_and_the_job_runs(cluster,
                                                                             start_worker):
    redis = forkq_client.default().redis
    jobs.Record.set(queue="media").perform_async("early")
    assert redis.hgetall(KEYS.shards) == {}
    assert sizes(redis) == [1, 0, 0, 0]
    start_worker(redis_url=cluster.url, queues=SHARDED)
    wait_for(lambda: redis.lrange("ran", 0, -1) == ["early"], message="the early job")
    assert redis.hgetall(KEYS.shards) == {"media": "4"}


def test_lowering_the_count_still_drains_every_shard_ever_used(cluster, start_worker):
    redis = forkq_client.default().redis
    redis.hset(KEYS.shards_ever, "media", 6)
    jid = jobs.Record.set(queue="media").perform_async("on shard 5")
    payload = json.loads(redis.rpop(KEYS.queue("media")))
    redis.lpush(KEYS.queue("media#5"), json.dumps({**payload, "shard": 5}))
    worker = start_worker(redis_url=cluster.url, queues=SHARDED)
    assert worker.services.shards.counts == {"media": 6}
    wait_for(lambda: redis.lrange("ran", 0, -1) == ["on shard 5"], message=jid)


def test_retries_and_scheduled_jobs_of_a_sharded_queue_stay_on_their_shard(cluster,
                                                                          start_worker,
                                                                          make_config):
    redis = forkq_client.default().redis
    worker = start_worker(redis_url=cluster.url, queues=SHARDED, poll_interval=0.1)
    forkq_client.default().shards = shards.ShardCounts()  # read the count just recorded
    jobs.Record.set(queue="media", shard_key="k").perform_in(0.3, "scheduled")
    home = shards.shard_names(KEYS, "media", 4)[shards.shard_of_key("k", 4)]
    jobs.explode.set(queue="media", shard_key="k").perform_async("x")
    wait_for(lambda: redis.lrange("ran", 0, -1) == ["scheduled"], message="the scheduled job")
    wait_for(lambda: redis.zcard(KEYS.retry_for(home)) == 1, message="the retry, on its shard")
    failed = json.loads(redis.zrange(KEYS.retry_for(home), 0, 0)[0])
    assert failed["shard"] == shards.shard_of_key("k", 4) and failed["retry_count"] == 0
    poller = Poller(worker.services, recovery=None)
    assert poller.enqueue_due(now=time.time() + 3600) == 1
    wait_for(lambda: redis.llen("tries") == 2, message="the second try")
    wait_for(lambda: redis.zcard(KEYS.retry_for(home)) == 1, message="the next retry")


def test_released_jobs_go_back_into_the_shard_they_came_from(cluster, make_config):
    """What a graceful stop does with a thread's unstarted jobs (``Fetcher.release``)."""
    redis = forkq_client.default().redis
    services = Services.build(make_config(redis_url=cluster.url, queues=SHARDED), cluster.url,
                              "t:0:0")
    services.shards.record(redis)
    jobs.Record.set(queue="media").perform_bulk([[i] for i in range(8)])
    assert sizes(redis) == [2, 2, 2, 2]
    fetcher = services.make_fetcher(services.make_redis(), 0)
    fetcher.batch = 10
    taken = fetcher.fetch()
    assert len(taken) == 2 and {job.queue for job in taken} == {"media"}
    assert sorted(sizes(redis)) == [0, 2, 2, 2]
    assert fetcher.release(taken) == 2
    assert sizes(redis) == [2, 2, 2, 2]
    fetcher.close()


@pytest.mark.slow
@pytest.mark.fault
def test_a_child_killed_mid_drain_of_a_sharded_queue_loses_nothing(cluster_master):  # noqa: F811
    master = cluster_master(processes=1, concurrency=2, heartbeat_ttl=60, queues=SHARDED)
    old = master.ready_pids(1)[0]
    redis = forkq_client.default().redis
    wait_for(lambda: redis.hget(KEYS.shards, "media") == "4", message="the count recorded")
    jids = [e2e_jobs.Sleep.set(queue="media").perform_async(0.05) for _ in range(24)]
    assert all(sizes(redis))
    wait_for(lambda: redis.hlen("e2e:started") >= 4, 10, message="jobs started")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: all(redis.hget("e2e:runs", jid) for jid in jids), 30,
             message="every job run")
    assert master.ready_pids(1)[0] != old
    assert sizes(redis) == [0, 0, 0, 0]


@pytest.mark.slow
def test_coroutine_jobs_of_a_sharded_queue_run_and_go_back_to_their_shards(cluster,
                                                                            cluster_master):
    """The event loop's list of a shard is in the shard's slot: the hand-over, the
    acknowledgement into the shard's counters and the push-back at the stop deadline."""
    master = cluster_master(processes=1, concurrency=2, timeout=1, queues=SHARDED,
                            require=["async_jobs"])
    master.ready_pids(1)
    redis = forkq_client.default().redis
    quick = [async_jobs.Nap.set(queue="media", result_ttl=60).perform_async(0.01)
             for _ in range(8)]
    for jid in quick:
        assert forkq.results.get(jid, wait=10).status == "succeeded"
    counted = [KEYS.queue_stat_keys(shard, "")[0]
               for shard in shards.shard_names(KEYS, "media", 4)]
    wait_for(lambda: [redis.get(key) for key in counted] == ["2"] * 4,
             message="each shard's own counter")
    slow = [async_jobs.Nap.set(queue="media").perform_async(30) for _ in range(8)]
    wait_for(lambda: len(redis.hkeys("async:started")) == 16, 10, message="all 8 running")
    master.send(signal.SIGTERM)
    assert master.wait_exit(20) == 0
    assert sizes(redis) == [2, 2, 2, 2]
    assert sorted(json.loads(text)["jid"] for key in shard_lists() for text in
                  redis.lrange(key, 0, -1)) == sorted(slow)


def test_a_unique_job_on_a_sharded_queue_meets_its_duplicates_on_one_shard(cluster,
                                                                            start_worker):
    redis = forkq_client.default().redis
    pause.pause(redis, KEYS, "media")
    start_worker(redis_url=cluster.url, queues=SHARDED, concurrency=1)
    unique = jobs.Record.set(queue="media", unique_for=60)
    assert unique.perform_async("once") is not None
    assert [unique.perform_async("once") for _ in range(6)] == [None] * 6
    assert sorted(sizes(redis)) == [0, 0, 0, 1]
    pause.resume(redis, KEYS, "media")
    wait_for(lambda: redis.lrange("ran", 0, -1) == ["once"], message="the one job to run")
    wait_for(lambda: unique.perform_async("once") is not None, message="its lock released")


def test_a_job_with_a_priority_or_a_fair_key_waits_in_shard_zeros_places(cluster,
                                                                          start_worker):
    redis = forkq_client.default().redis
    pause.pause(redis, KEYS, "media")
    start_worker(redis_url=cluster.url, queues=SHARDED, concurrency=1)
    for index in range(3):
        jobs.Record.set(queue="media", priority=5).perform_async(f"urgent-{index}")
        jobs.Record.set(queue="media", fair_key="t1").perform_async(f"fair-{index}")
    assert redis.llen(KEYS.level("media", 5)) == 3 and redis.llen(KEYS.tenant("media", "t1")) == 3
    assert sizes(redis) == [0, 0, 0, 0]
    pause.resume(redis, KEYS, "media")
    wait_for(lambda: redis.llen("ran") == 6, message="the six jobs to run")
