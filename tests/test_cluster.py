"""The cluster layout (``layout: cluster``) on a real Redis Cluster of 3 primaries and 3
replicas (``cluster_nodes.py``): URLs and config, the refusals, the push, both fetch modes,
retries and the schedule, the dead set, heartbeats and stats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
import redis as redis_py
from redis.exceptions import RedisClusterException

import e2e_jobs
import forkq
import jobs  # noqa: F401 (registers the jobs these tests run)
from forkq import client as forkq_client
from forkq import config, connection
from forkq.api import Api
from forkq.connection import urls
from forkq.errors import ConfigError, ForkqError
from forkq.keys import ClusterKeys
from forkq.supervisor.preflight import check_redis as preflight
from forkq.flow.cancel import CancelView
from forkq.flow.pause import PausedView
from forkq.flow.placement import PlacementView
from forkq.flow.shards import ShardPlan
from forkq.worker.clusterfetch import ClusterFetcher
from forkq.worker.fetch import FetchMode
from forkq.worker.ordering import QueueOrder
from forkq.worker.poller import Poller
from forkq.worker.services import Services
from harness import free_port
from helpers import lose_next_reply, wait_for
from masters import Master, started_by
from redis_nodes import Node

KEYS = ClusterKeys()


# --- URLs and config (pure)

def test_a_cluster_url_lists_start_nodes_and_takes_no_db():
    target = urls.parse("rediss+cluster://u:s%40cret@10.0.0.1:7000,10.0.0.2:7001/0"
                        "?ssl_cert_reqs=required")
    assert target.cluster == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert target.options["ssl"] and target.options["password"] == "s@cret"
    with pytest.raises(urls.RedisURLError, match="only database 0"):
        urls.parse("redis+cluster://h:7000/3")
    assert urls.parse("redis+cluster://h:7000?wait_replicas=1").wait_replicas == 1
    with pytest.raises(urls.RedisURLError, match="cluster node address 'h' is not host:port"):
        urls.parse("redis+cluster://h")
    for bad in ("h:0", "h:65536", "h:99999"):
        with pytest.raises(urls.RedisURLError, match=f"'{bad}' is not host:port .a port from 1"):
            urls.parse(f"redis+cluster://h:7000,{bad}")


def test_the_layout_follows_the_url_and_a_contradiction_is_refused():
    assert config.from_mapping({"redis_url": "redis+cluster://h:7000"}).layout == "cluster"
    assert config.from_mapping({"redis_url": "redis://h:6379/0"}).layout == "default"
    with pytest.raises(ConfigError, match="test: layout: cluster needs a Redis Cluster URL"):
        config.from_mapping({"redis_url": "redis://h:6379/0", "layout": "cluster"}, "test")
    with pytest.raises(ConfigError, match="layout: default cannot run on a Redis Cluster"):
        config.from_mapping({"redis_url": "redis+cluster://h:7000", "layout": "default"})


def test_each_queue_keeps_its_keys_in_one_slot_and_queues_spread(cluster):
    client = cluster.client()
    for name in ("default", "mail"):
        slots = {client.keyslot(key) for key in (
            KEYS.queue(name), KEYS.schedule_for(name), KEYS.retry_for(name),
            KEYS.queue_inflight(name, "h:1:0", 3, 1), *KEYS.queue_stat_keys(name, "2026-01-01"))}
        assert len(slots) == 1
    assert KEYS.home_queue(KEYS.queue_inflight("a:b", "h:1:0", 0)) == "a:b"
    owners = {client.get_node_from_key(KEYS.queue(f"q{i}")).name for i in range(12)}
    assert len(owners) == 3  # a dozen queues land on all three primaries


# --- refused at start, naming the thing at fault

def test_node_connections_keep_their_timeout_in_the_kernel(cluster):
    client = connection.make_client(cluster.url + "?socket_timeout=2.5")
    try:
        assert client.set("timeouts", "kernel")
        node = client.get_node_from_key("timeouts")
        held = node.redis_connection.connection_pool.get_connection()
        assert held.kernel_timeout == 2.5 and held._sock.gettimeout() is None
        node.redis_connection.connection_pool.release(held)
    finally:
        client.close()


def test_start_refuses_the_default_layout_on_a_cluster_node(cluster, make_config):
    node = f"redis://127.0.0.1:{cluster.nodes[0].port}/0"
    with pytest.raises(ForkqError, match="is a Redis Cluster node: the default layout"):
        preflight(make_config(redis_url=node))


def test_start_refuses_the_cluster_layout_on_a_single_server(tmp_path, make_config):
    single = Node(tmp_path / "single", free_port())
    try:
        with pytest.raises(ForkqError, match="not a cluster node"):
            preflight(make_config(redis_url=f"redis+cluster://127.0.0.1:{single.port}",
                                  metrics={"port": None}))
    finally:
        single.stop()


def test_start_takes_periodic_jobs_and_the_exporter_on_a_cluster(cluster, make_config):
    preflight(make_config(redis_url=cluster.url, periodic=[
        {"name": "tick", "class": "jobs.Record", "cron": "* * * * *", "args": [1]}]))


# --- the push and the fetch

@pytest.mark.parametrize("fetch", ["reliable", "basic"])
def test_pushed_jobs_run_from_queues_on_every_primary(cluster, start_worker, fetch):
    names = [f"q{i}" for i in range(6)]
    for index, name in enumerate(names):
        jobs.Record.set(queue=name).perform_async(f"one-{index}")
    jobs.Record.set(queue="q0").perform_bulk([[f"bulk-{i}"] for i in range(50)])
    redis = forkq_client.default().redis
    assert redis.llen(KEYS.queue("q0")) == 51
    assert redis.smembers(KEYS.queues) == set(names)
    start_worker(redis_url=cluster.url, queues=names, fetch=fetch)
    wait_for(lambda: redis.llen("ran") == 56, message="56 jobs to run")
    assert set(redis.lrange("ran", 0, -1)) == {f"one-{i}" for i in range(6)} | {
        f"bulk-{i}" for i in range(50)}
    api = Api(redis, KEYS)
    wait_for(lambda: api.stats()["processed"] == 56, message="the stats flushed")
    assert api.history(1)[-1].processed == 56


def lose_next_reply_on_node(redis, key: str) -> None:
    """The next command on the node of ``key`` runs, but its reply is lost (as when the node
    is killed between the two): the connection its pool hands out next raises instead."""
    pool = redis.get_node_from_key(key).redis_connection.connection_pool
    connection = pool.get_connection()
    lose_next_reply(connection)
    pool.release(connection)


def test_an_idle_wait_that_lost_its_reply_is_adopted_not_repeated_by_the_cluster_client(
        cluster):
    queues = [config.Queue("default")]
    redis = connection.make_client(cluster.url)
    take = ClusterFetcher(redis, KEYS, slot="h:1:0", shards=ShardPlan(KEYS, queues),
                          queues=QueueOrder(tuple(queues), strict=True),
                          mode=FetchMode.RELIABLE, thread_index=0, idle_plan=("default",),
                          paused=PausedView(), cancels=CancelView(), placement=PlacementView())
    queue = KEYS.queue("default")
    redis.lpush(queue, *[json.dumps({"jid": name, "queue": "default"})
                         for name in ("moved", "next")])
    lose_next_reply_on_node(redis, queue)
    with pytest.raises(redis_py.ConnectionError):
        take.wait(threading.Event())
    (adopted,) = take.wait(threading.Event())  # as the processor calls it again
    assert json.loads(adopted.text)["jid"] == "moved"
    assert [json.loads(text)["jid"] for text in redis.lrange(queue, 0, -1)] == ["next"]
    assert redis.lrange(take.private_key, 0, -1) == [adopted.text]


def test_a_scheduled_job_moves_to_its_queue_and_runs(cluster, start_worker):
    jobs.Record.set(queue="later").perform_in(0.3, "scheduled")
    redis = forkq_client.default().redis
    assert redis.zcard(KEYS.schedule_for("later")) == 1
    start_worker(redis_url=cluster.url, queues=["later"])
    wait_for(lambda: redis.lrange("ran", 0, -1) == ["scheduled"], message="the scheduled job")
    assert redis.zcard(KEYS.schedule_for("later")) == 0


def test_a_failure_goes_to_its_queues_retry_set_then_runs_again(cluster, start_worker,
                                                                 make_config):
    jobs.explode.set(queue="boom").perform_async("x")
    redis = forkq_client.default().redis
    start_worker(redis_url=cluster.url, queues=["boom"])
    wait_for(lambda: redis.zcard(KEYS.retry_for("boom")) == 1, message="the retry")
    failed = json.loads(redis.zrange(KEYS.retry_for("boom"), 0, 0)[0])
    assert failed["error_message"] == "exploded x" and failed["retry_count"] == 0
    poller = Poller(Services.build(make_config(redis_url=cluster.url, queues=["boom"]),
                                   cluster.url, "t:0:0"), recovery=None)
    assert poller.enqueue_due(now=time.time() + 3600) == 1
    wait_for(lambda: redis.llen("tries") == 2, message="the second try")


def test_a_job_out_of_retries_goes_to_the_dead_set(cluster, start_worker):
    jobs.explode_once.set(queue="boom", retry=0).perform_async("y")
    redis = forkq_client.default().redis
    start_worker(redis_url=cluster.url, queues=["boom"])
    wait_for(lambda: redis.zcard(KEYS.dead) == 1, message="the dead job")
    assert json.loads(redis.zrange(KEYS.dead, 0, 0)[0])["error_message"] == "no retry"


def test_a_malformed_scheduled_entry_is_buried_in_two_steps(cluster, make_config):
    redis = forkq_client.default().redis
    redis.zadd(KEYS.schedule_for("bad"), {"not json": 1.0})
    poller = Poller(Services.build(make_config(redis_url=cluster.url, queues=["bad"]),
                                   cluster.url, "t:0:0"), recovery=None)
    poller.enqueue_due()
    assert redis.zcard(KEYS.schedule_for("bad")) == 0
    dead = json.loads(redis.zrange(KEYS.dead, 0, -1)[0])
    assert dead["raw"] == "not json"


def test_heartbeat_and_process_record(cluster, start_worker):
    worker = start_worker(redis_url=cluster.url, queues=["default"])
    api = Api(forkq_client.default().redis, KEYS)
    wait_for(lambda: [p for p in api.processes() if p.identity == worker.services.identity],
             message="the process record")


# --- real ``forkq start`` masters on the cluster

@pytest.fixture
def cluster_master(cluster, tmp_path):
    """Start a master on the cluster (metrics off unless asked); killed at the end."""
    started = []

    def start(**settings) -> Master:
        directory = tmp_path / f"m{len(started)}"
        directory.mkdir()
        master = Master(directory, **{"redis_url": cluster.url, "metrics": {"port": None},
                                      **settings})
        started.append(master)
        return master.start()

    yield start
    for master in started:
        master.kill_all()


@pytest.mark.slow
@pytest.mark.fault
def test_a_child_killed_mid_job_is_replaced_and_its_job_recovered(cluster_master):
    master = cluster_master(processes=1, heartbeat_ttl=60, queues=["alpha", "beta"])
    old = master.ready_pids(1)[0]
    redis = forkq_client.default().redis
    jid = e2e_jobs.Sleep.set(queue="beta").perform_async(0.5)
    wait_for(lambda: started_by(redis, jid) == old, 10, message="job started")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: redis.hget("e2e:runs", jid) == "1", 15, message="job run again")
    assert started_by(redis, jid) == master.ready_pids(1)[0] != old
    assert "recovered 1 job(s) left by this slot's previous process" in master.log()


@pytest.mark.slow
def test_a_graceful_stop_puts_unstarted_jobs_back_and_leaves_no_private_list(cluster,
                                                                            cluster_master):
    master = cluster_master(processes=1, concurrency=2, timeout=1, queues=["alpha"])
    master.ready_pids(1)
    redis = forkq_client.default().redis
    jids = [e2e_jobs.Sleep.set(queue="alpha").perform_async(0.3) for _ in range(20)]
    wait_for(lambda: redis.hlen("e2e:started") >= 2, 10, message="jobs started")
    master.send(signal.SIGTERM)
    assert master.wait_exit(20) == 0
    ran = redis.hlen("e2e:runs")
    assert redis.llen(KEYS.queue("alpha")) + ran == len(jids)
    assert not [key for node in cluster.primaries() for key in node.client().keys("*inflight*")]


def queue_in_slot(client, slot: int) -> str:
    """A queue name whose keys hash to ``slot``."""
    return next(f"m{i}" for i in range(10**6) if client.keyslot(KEYS.queue(f"m{i}")) == slot)


@pytest.mark.slow
@pytest.mark.fault
def test_a_queue_whose_slot_moves_mid_drain_loses_nothing(cluster, start_worker):
    client = cluster.client()
    name = queue_in_slot(client, 0)  # the first slot of its primary: reshard moves it first
    source = client.get_node_from_key(KEYS.queue(name))
    target = next(node for node in client.get_primaries() if node.name != source.name)
    ids = _node_ids(cluster)
    jobs.slow.set(queue=name).perform_bulk([[i, 0.01] for i in range(600)])
    redis = forkq_client.default().redis
    start_worker(redis_url=cluster.url, queues=[name])
    wait_for(lambda: redis.llen("ran") >= 20, message="the drain under way")
    done = subprocess.run(
        ["redis-cli", "--cluster", "reshard", source.name, "--cluster-from", ids[source.name],
         "--cluster-to", ids[target.name], "--cluster-slots", "1", "--cluster-yes"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-1000:]
    assert _owner(cluster, 0) == target.name
    assert redis.llen(KEYS.queue(name)) > 0  # moved with jobs left: the drain goes on there
    wait_for(lambda: len(set(redis.lrange("ran", 0, -1))) == 600, timeout=30,
             message="every job run")
    assert redis.llen(KEYS.queue(name)) == 0


def _node_ids(cluster) -> dict[str, str]:
    """host:port → node id, from CLUSTER NODES."""
    with cluster.nodes[0].client() as node:
        nodes = node.execute_command("CLUSTER NODES")
    return {address.split("@")[0]: fields["node_id"] for address, fields in nodes.items()}


def _owner(cluster, slot: int) -> str:
    with cluster.nodes[0].client() as node:
        for start, end, primary, *_ in node.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return f"{primary[0]}:{primary[1]}"
    return ""


def test_a_malformed_payload_in_a_queue_goes_to_the_dead_set(cluster, start_worker):
    redis = forkq_client.default().redis
    redis.lpush(KEYS.queue("bad"), "{not json")
    start_worker(redis_url=cluster.url, queues=["bad"])
    wait_for(lambda: redis.zcard(KEYS.dead) == 1, message="the malformed job buried")
    assert json.loads(redis.zrange(KEYS.dead, 0, 0)[0])["raw"] == "{not json"
    assert redis.llen(KEYS.queue("bad")) == 0


@pytest.mark.slow
@pytest.mark.fault
def test_a_primary_killed_mid_drain_fails_over_and_every_job_runs(cluster, start_worker):
    """A drain with no pushes during it: what a failover can undo (an acknowledgement, a
    fetch not yet replicated) brings jobs back to run again, never loses one."""
    client = cluster.client()
    name = "failover"
    jobs.slow.set(queue=name).perform_bulk([[i, 0.01] for i in range(400)])
    primary = next(node for node in cluster.nodes
                   if f"127.0.0.1:{node.port}" == client.get_node_from_key(KEYS.queue(name)).name)
    redis = forkq_client.default().redis
    start_worker(redis_url=cluster.url, queues=[name])
    wait_for(lambda: redis.llen("ran") >= 20, message="the drain under way")
    primary.kill()
    try:
        wait_for(lambda: _answered(lambda: len(set(redis.lrange("ran", 0, -1)))) == 400,
                 timeout=60, message="every job run after the failover")
        assert redis.llen(KEYS.queue(name)) == 0
    finally:
        cluster.restart(primary)


def _answered(read):
    """``read()``, or None while the cluster fails over (it says it is down meanwhile)."""
    try:
        return read()
    except (redis_py.RedisError, RedisClusterException):
        return None


def test_a_paused_queue_is_skipped_until_resumed(cluster, start_worker):
    redis = forkq_client.default().redis
    api = Api(redis, KEYS)
    api.queue("held").pause()
    jobs.Record.set(queue="held").perform_async("held")
    jobs.Record.set(queue="open").perform_async("open")
    start_worker(redis_url=cluster.url, queues=["held", "open"])
    wait_for(lambda: redis.lrange("ran", 0, -1) == ["open"], message="the open queue's job")
    assert api.queue("held").size == 1
    api.queue("held").resume()
    wait_for(lambda: sorted(redis.lrange("ran", 0, -1)) == ["held", "open"],
             message="the resumed queue's job")


def test_results_are_kept_and_awaited(cluster, start_worker):
    jid = jobs.Record.set(queue="kept", result_ttl=60).perform_async("value")
    assert forkq.results.get(jid).status == "queued"
    start_worker(redis_url=cluster.url, queues=["kept"])
    result = forkq.results.get(jid, wait=10)
    assert result.status == "succeeded" and result.value == "recorded value"


def test_a_failing_job_keeping_results_goes_to_retry_and_records_the_error(cluster,
                                                                           start_worker):
    jid = jobs.explode.set(queue="kept", result_ttl=60).perform_async("z")
    redis = forkq_client.default().redis
    start_worker(redis_url=cluster.url, queues=["kept"])
    wait_for(lambda: redis.zcard(KEYS.retry_for("kept")) == 1, message="the retry")
    wait_for(lambda: forkq.results.get(jid).errors, message="the error recorded")
    assert forkq.results.get(jid).errors[-1]["message"] == "exploded z"
