"""``wait_replicas`` in the cluster layout, on a real cluster of 3 primaries and 3 replicas
(``cluster_nodes.py``): a push's ``WAIT`` on its node's connection, the fetch acknowledgement's,
and kill -9 of a queue's primary mid-drain while a producer pushes: no acknowledged push and
no queued job is lost."""

from __future__ import annotations

import asyncio
import logging
import signal

import pytest
import redis as redis_py

import failover_jobs
import jobs  # noqa: F401 (registers the jobs these tests run)
from forkq import client as forkq_client
from forkq import connection
from forkq import aio
from forkq.errors import ClusterUnsupported
from forkq.keys import ClusterKeys
from helpers import stop_process, wait_for

KEYS = ClusterKeys()
#: jobs queued (and replicated) before the primary dies
PRELOADED = 300
#: jobs a producer pushes one by one across the failover
PUSHED = 80
#: jobs the worker runs, and pushes the producer tries, while the queue's replica is cut off,
#: just before the primary's death
LAG_JOBS = 10
LAG_PUSHES = 5
#: seconds each job sleeps: the worker (2 threads) drains slower than the producer pushes
PAUSE = 0.02


def test_a_push_waits_for_its_nodes_replica(cluster):
    redis = connection.make_client(cluster.url + "?wait_replicas=1&wait_timeout=2")
    assert redis.forkq_wait == (1, 2000)
    for name in ("a", "b", "c", "d"):  # queues on several primaries
        assert connection.send_commands(redis, [("LPUSH", KEYS.queue(name), "job")]) == [1]
    block = [("MULTI",), ("LPUSH", KEYS.queue("a"), "x"), ("LPUSH", KEYS.queue("a"), "y"),
             ("EXEC",)]
    assert connection.send_commands(redis, block)[-1] == [2, 3]
    refused = connection.make_client(cluster.url + "?wait_replicas=2&wait_timeout=0.1")
    with pytest.raises(connection.ReplicaTimeoutError, match="confirmed by 1 of 2 replica"):
        connection.send_commands(refused, [("LPUSH", KEYS.queue("a"), "z")])
    assert cluster.client().llen(KEYS.queue("a")) == 4, "the write stands on the primary"


def test_the_asyncio_client_refuses_wait_replicas_on_a_cluster(cluster):
    """Its push cannot send the WAIT on the key's node: refused, never silently unconfirmed."""
    forkq_client.configure(redis_url=cluster.url + "?wait_replicas=1")
    try:
        with pytest.raises(ClusterUnsupported, match=r"wait_replicas with the asyncio client"):
            asyncio.run(aio.perform_async(jobs.Record, "unconfirmed"))
    finally:
        forkq_client.configure(redis_url=cluster.url)


def test_a_push_follows_a_moved_slot_and_still_waits(cluster):
    redis = connection.make_client(cluster.url + "?wait_replicas=1&wait_timeout=2")
    key = KEYS.queue("moving")
    right = redis.get_node_from_key(key)
    wrong = next(node for node in redis.get_primaries() if node.name != right.name)
    slot = redis.keyslot(key)
    redis.nodes_manager.slots_cache[slot] = [wrong]  # a stale table: the node says MOVED
    assert connection.send_commands(redis, [("LPUSH", key, "job")]) == [1]
    assert redis.get_node_from_key(key).name == right.name


def test_a_fetch_acknowledgement_short_of_replicas_is_logged(cluster, start_worker, caplog,
                                                          monkeypatch):
    monkeypatch.setattr(connection, "replicas", connection.ReplicaWatch())
    url = cluster.url + "?wait_replicas=2&wait_timeout=0.05"
    jobs.Record.set(queue="acked").perform_async("one")
    with caplog.at_level(logging.WARNING, logger="forkq"):
        start_worker(redis_url=url, queues=["acked"])
        redis = forkq_client.default().redis
        wait_for(lambda: redis.lrange("ran", 0, -1) == ["one"], message="the job")
        wait_for(lambda: "fewer writes than wait_replicas=2 (1 did)" in caplog.text,
                 message="the short acknowledgement logged")


@pytest.mark.slow
@pytest.mark.fault
def test_kill_9_of_a_queues_primary_with_wait_replicas_loses_nothing(
        cluster, start_worker, tmp_path, monkeypatch):
    """The queue's replica is stopped while the worker runs ``LAG_JOBS`` and the producer
    pushes, so the primary holds writes no replica has; then the primary is killed and the
    replica, resumed, takes over. Pushes made meanwhile were refused (``ReplicaTimeoutError``)
    and pushed again by the producer; every one it was told had succeeded runs."""
    runs = tmp_path / "runs"
    runs.touch()
    monkeypatch.setenv("FAILOVER_RUNS_FILE", str(runs))
    url = cluster.url + "?wait_replicas=1&wait_timeout=0.3"
    forkq_client.configure(redis_url=url, namespace="")
    admin = cluster.client()
    name = next(f"waited{i}" for i in range(50) if admin.get_node_from_key(
        KEYS.queue(f"waited{i}")).name != admin.get_node_from_key(KEYS.queues).name)
    failover_jobs.note.set(queue=name).perform_bulk([[f"j{i}", PAUSE] for i in range(PRELOADED)])
    primary = _node(cluster, admin.get_node_from_key(KEYS.queue(name)).port)
    replica = next(node for node in cluster.nodes if _primary_port(node) == primary.port)
    start_worker(redis_url=url, queues=[name], concurrency=2)
    producer = failover_jobs.Producer(PUSHED, PAUSE, queue=name)
    ran = lambda: [line.split()[0] for line in runs.read_text().splitlines()]  # noqa: E731
    try:
        wait_for(lambda: len(ran()) >= PRELOADED // 10, message="the drain under way")
        producer.start()
        stop_process(replica.process.pid)
        try:
            with primary.client() as direct:  # what the kernel holds for the replica goes too
                direct.client_kill_filter(_type="replica")
            done, tried = len(ran()), producer.attempts()
            wait_for(lambda: len(ran()) >= done + LAG_JOBS
                     and producer.attempts() >= tried + LAG_PUSHES,
                     message="jobs run and pushes tried during the lag")
            primary.kill()
        finally:
            replica.process.send_signal(signal.SIGCONT)
        wait_for(lambda: _primary_port(replica) == 0, timeout=20, interval=0.05,
                 message="the replica to take over")
        # Until the old primary is back as its replica, the new one has none to confirm a
        # push: every push is refused, as wait_replicas=1 promises.
        primary = cluster.restart(primary)
        producer.join(40)
        expected = {f"j{i}" for i in range(PRELOADED)} | set(producer.acknowledged)
        wait_for(lambda: expected <= set(ran()), timeout=40, message="every job to run")
    finally:
        if primary.process.poll() is not None:
            cluster.restart(primary)
    assert expected <= set(ran()), f"lost: {sorted(expected - set(ran()))}"
    assert len(producer.acknowledged) == PUSHED
    assert producer.errors > 0, "pushes during the lag were refused, not acknowledged"


def _node(cluster, port: int):
    return next(node for node in cluster.nodes if node.port == port)


def _primary_port(node) -> int | None:
    """The port of ``node``'s primary; 0 when it is a primary itself; None when down."""
    try:
        with node.client() as client:
            info = client.info("replication")
    except redis_py.ConnectionError:
        return None
    return 0 if info["role"] == "master" else int(info["master_port"])
