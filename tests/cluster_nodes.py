"""A real Redis Cluster for the cluster-layout tests: 3 primaries and 3 replicas of Debian's
``redis-server`` on loopback ports, joined by ``redis-cli --cluster create``.

Started once per test session (``redis_cluster``), emptied before each test that asks for
``cluster`` (FLUSHALL on every primary). ``tests/run`` installs ``redis-server``, which brings
``redis-cli`` (Debian's ``redis-tools``); without either the tests skip, naming it.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis as redis_py
from redis.cluster import RedisCluster

from harness import cluster_port
from helpers import wait_for
from redis_nodes import Node, server_binary

#: primaries, each with one replica
PRIMARIES = 3
#: milliseconds before a silent node counts as failed (short: the failover tests wait on it)
NODE_TIMEOUT_MS = 1000
#: a replica may take over however long it was cut off from its primary (validity factor 0)
NODE_ARGS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--appendonly", "no",
             "--cluster-replica-validity-factor", "0")


def cli_binary() -> str:
    path = shutil.which("redis-cli")
    if not path:
        pytest.skip("needs redis-cli (Debian's redis-tools, which redis-server brings; "
                    "tests/run installs it)")
    return path


class Cluster:
    """Six nodes joined into one cluster; ``url`` is forkq's ``redis+cluster://`` URL."""

    def __init__(self, directory) -> None:
        server_binary()  # skips with the reason before anything starts
        cli = cli_binary()
        self.nodes: list[Node] = []
        try:
            for index in range(PRIMARIES * 2):
                self.nodes.append(Node(directory / f"node{index}", cluster_port(), *NODE_ARGS))
            self._create(cli)
        except BaseException:
            self.stop()
            raise

    def _create(self, cli: str) -> None:
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        done = subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "1",
                               "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-1500:]}"
                               f"{done.stderr[-500:]}")
        wait_for(self._ready, timeout=30, interval=0.05, message="cluster_state:ok on every node")

    def _ready(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                try:
                    info = client.cluster("info")
                except redis_py.ConnectionError:  # a node restarted by ``restart``, not up yet
                    return False
                if info.get("cluster_state") != "ok" or int(info["cluster_known_nodes"]) < \
                        len(self.nodes):
                    return False
                replication = client.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
        return True

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:PRIMARIES])
        return f"redis+cluster://{hosts}"

    def client(self) -> RedisCluster:
        return RedisCluster(host="127.0.0.1", port=self.nodes[0].port, decode_responses=True)

    def primaries(self) -> list[Node]:
        """The nodes that are primaries now (a failover changes them)."""
        return [node for node in self.nodes
                if node.process.poll() is None and _role(node) == "master"]

    def restart(self, node: Node) -> Node:
        """Start a killed node again on its port and directory (it rejoins as a replica) and
        wait until every node says cluster_state:ok."""
        index = self.nodes.index(node)
        self.nodes[index] = Node(node.directory, node.port, *NODE_ARGS)
        wait_for(self._ready, timeout=30, interval=0.05, message="the cluster whole again")
        return self.nodes[index]

    def flush(self) -> None:
        for node in self.primaries():
            with node.client() as client:
                client.flushall()
                client.script_flush()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _role(node: Node) -> str:
    try:
        with node.client() as client:
            return client.info("replication")["role"]
    except redis_py.ConnectionError:
        return "down"


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster(redis_cluster):
    """The session's cluster, empty; the forkq client is pointed at it (layout: cluster)."""
    from forkq import client as forkq_client

    redis_cluster.flush()
    forkq_client.configure(redis_url=redis_cluster.url, namespace="")
    yield redis_cluster
