"""Redis Cluster clients (``layout: cluster``, a ``redis+cluster://`` URL): redis-py's
``RedisCluster``, which routes each command to its key's primary and follows ``MOVED`` and
``ASK`` while slots move.

Runs in any process, like the plain clients of ``connection/__init__.py`` (which hands a cluster
URL to ``client`` here and a cluster client's commands to ``send_commands``). A cluster client
has no single connection pool: every command, script call included, goes to the node of its
keys, and a script's keys must all share one hash slot (``keys.ClusterKeys`` makes sure of
that: one hash tag per queue).

``send_commands`` keeps the push at one round trip: the ``SADD`` of a queue's name into the
directory of queues (another slot) is sent only the first time this client pushes to that
queue; the directory is not part of the delivery path. The other commands go to their nodes,
one after the other when they are on several.
"""

from __future__ import annotations

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from . import urls
from ..errors import ClusterUnsupported
from ..keys import CLUSTER_QUEUES


class LayoutError(redis.RedisError):
    """The server is not what the layout needs: a cluster for ``layout: cluster``, a single
    server (or Sentinel) for the default layout. One layout per fleet."""


class ClusterClient(RedisCluster):
    """A ``RedisCluster`` with what forkq's senders look for: no ``WAIT`` setting (refused in
    the URL), and the queue names whose ``SADD`` this client already sent."""

    forkq_wait = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.known_queues: set[str] = set()


def client(target: urls.Target, options: dict) -> ClusterClient:
    """A cluster client from the URL's start nodes; a node that is not in cluster mode is
    refused with ``LayoutError``, naming the URL."""
    settings = dict(options, decode_responses=True, **target.options)
    settings.pop("timeout", None)  # the waiting pool's; a cluster client has a pool per node
    if not settings.pop("ssl"):
        settings = {k: v for k, v in settings.items() if not k.startswith("ssl_")}
    else:
        settings["ssl"] = True
    nodes = [ClusterNode(host, port) for host, port in target.cluster]
    try:
        return ClusterClient(startup_nodes=nodes, **settings)
    except (redis.RedisError, RedisClusterException) as exc:
        if "cluster mode is not enabled" in str(exc).lower():
            raise LayoutError(f"{target.shown}: this Redis is not a cluster node (cluster mode "
                              f"is off): layout: cluster needs a Redis Cluster; for a single "
                              f"server use a redis:// URL and the default layout") from None
        raise redis.ConnectionError(f"{target.shown}: {exc}") from exc


def send_commands(cluster: ClusterClient, commands: list[tuple]) -> list:
    """``connection.send_commands`` for a cluster: each command to its key's node; a queue's
    ``SADD`` into the directory only once per client (its reply is then 0)."""
    replies: list = []
    for command in commands:
        if command[0] == "SADD" and command[1].endswith(CLUSTER_QUEUES):
            names = [name for name in command[2:] if name not in cluster.known_queues]
            if not names:
                replies.append(0)
                continue
            replies.append(cluster.execute_command("SADD", command[1], *names))
            cluster.known_queues.update(names)
            continue
        replies.append(cluster.execute_command(*command))
    return replies


def is_cluster_node(info: dict) -> bool:
    """Whether ``INFO``'s reply comes from a server in cluster mode."""
    return str(info.get("cluster_enabled", "0")) == "1"


def check_layout(client, layout: str, shown: str) -> None:
    """Refuse the default layout on a cluster node (``layout: cluster`` on a single server is
    refused when its client is made, by ``client``)."""
    if layout == "default" and is_cluster_node(client.info("cluster")):
        raise LayoutError(f"{shown} is a Redis Cluster node: the default layout (Sidekiq's "
                          f"keys) cannot run on a cluster; use layout: cluster with a "
                          f"redis+cluster://host:port[,host:port...] URL")


def refuse_unsupported(config) -> None:
    """At ``forkq start``, in the cluster layout: refuse the configured features it does not
    run yet. Those only code asks for are refused at the call (``keys.ClusterKeys``)."""
    if config.layout != "cluster":
        return
    if config.metrics.port is not None:
        raise ClusterUnsupported("the /metrics exporter (metrics.port)",
                                 "set metrics: {port: null}")


def refuse_coroutines(config, job_classes) -> None:
    """At a worker's start, in the cluster layout: refuse coroutine jobs among the classes
    its application registered."""
    coroutines = sorted(c.wire_name() for c in job_classes if c.coroutine)
    if config.layout == "cluster" and coroutines:
        raise ClusterUnsupported(f"coroutine jobs (async def perform: {', '.join(coroutines)})",
                                 "run them on a default-layout Redis")
