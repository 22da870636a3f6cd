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
    nodes = [ClusterNode(host, port) for host, port in target.cluster]
    try:
        return ClusterClient(startup_nodes=nodes, **settings(target, options))
    except (redis.RedisError, RedisClusterException) as exc:
        raise connect_error(target, exc) from exc


def settings(target: urls.Target, options: dict) -> dict:
    """A cluster client's settings (the synchronous one's, and ``connection.aio``'s): the
    URL's over forkq's ``options``."""
    found = dict(options, decode_responses=True, **target.options)
    found.pop("timeout", None)  # the waiting pool's; a cluster client has a pool per node
    if not found.pop("ssl"):
        return {k: v for k, v in found.items() if not k.startswith("ssl_")}
    found["ssl"] = True
    return found


def connect_error(target: urls.Target, exc: Exception) -> redis.RedisError:
    """What a cluster client's failure to start means, naming the URL: ``LayoutError`` when
    the node is not in cluster mode."""
    if "cluster mode is not enabled" in str(exc).lower():
        return LayoutError(f"{target.shown}: this Redis is not a cluster node (cluster mode "
                           f"is off): layout: cluster needs a Redis Cluster; for a single "
                           f"server use a redis:// URL and the default layout")
    return redis.ConnectionError(f"{target.shown}: {exc}")


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
