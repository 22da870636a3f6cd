"""Fixtures: a real redis-server started once per test session, emptied before each test."""

from __future__ import annotations

import os
import sys

import pytest
import redis as redis_py

sys.path.insert(0, os.path.dirname(__file__))
# the benchmarks' harness, for what the tests share with it (free ports, a cluster node's ports)
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))

from forkq import client as forkq_client  # noqa: E402
from forkq import config as forkq_config  # noqa: E402
from forkq.connection.embedded import EmbeddedRedis  # noqa: E402
from masters import start_master  # noqa: E402,F401 (a fixture for the end-to-end tests)
from cluster_nodes import cluster, redis_cluster  # noqa: E402,F401 (the cluster-layout tests')


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    return redis_server.url


@pytest.fixture
def redis(redis_url):
    """A client on an empty database; the forkq client is pointed at the same server."""
    client = redis_py.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    drop_stale_blocking_fetches(client)
    forkq_client.configure(redis_url=redis_url, namespace="")
    yield client
    client.close()


def drop_stale_blocking_fetches(client) -> None:
    """An earlier test's worker thread can leave its connection blocked in a fetch on Redis
    (the thread gone, the command still waiting): it would take this test's first job into a
    private list nobody reads. No worker of this test runs yet when its ``redis`` fixture is
    made, so every blocked client is such a leftover."""
    for blocked in client.client_list():
        if "b" in blocked.get("flags", ""):
            client.client_kill_filter(_id=blocked["id"])


@pytest.fixture
def make_config(redis_url, tmp_path):
    """Build a Config on the test server; keyword arguments are config keys."""
    def make(**values):
        values.setdefault("redis_url", redis_url)
        values.setdefault("data_dir", str(tmp_path / "data"))
        return forkq_config.from_mapping(values, "test")
    return make


@pytest.fixture
def start_worker(make_config):
    """Start in-process workers (threads of this test process); stopped at teardown."""
    import signal
    import threading

    from forkq import worker as worker_module

    running = []

    def start(before_start=None, **values):
        """``before_start(worker)`` sees the worker built, its threads not started. Its
        threads stay on any CPU unless ``cpu_affinity`` says otherwise: they are this test
        process's threads, and a mask would outlive the worker."""
        values.setdefault("cpu_affinity", False)
        values.setdefault("heartbeat_interval", 0.2)
        values.setdefault("poll_interval", 0.1)
        values.setdefault("concurrency", 3)
        config = make_config(**values)
        worker = worker_module.Worker(config, config.redis_url, f"test:{len(running)}:0")
        if before_start is not None:
            before_start(worker)
        worker.start()
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        running.append((worker, thread))
        return worker

    yield start
    for worker, thread in running:
        worker.signals.push(signal.SIGTERM)
        thread.join(30)
