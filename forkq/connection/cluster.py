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
queue; the directory is not part of the delivery path. The same holds for the directories of
queues that had a priority level or a tenant (``keys.CLUSTER_DIRECTORIES``). The other
commands go to their nodes, one after the other when they are on several; a ``MULTI`` block,
one per slot.

With ``wait_replicas`` in the URL, a write and its ``WAIT`` must share a connection (a
``WAIT`` counts the confirmations of its own connection's writes), which ``RedisCluster``'s
routing does not give: ``send_on_node`` sends them in one write on a connection of the key's
primary, and follows redirections itself (the node then ran nothing).
"""

from __future__ import annotations

import time

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (AskError, ClusterDownError, MovedError, RedisClusterException,
                              TryAgainError)

from . import urls
from .replication import check_wait, wait_setting
from .timeouts import KernelTimeouts
from ..keys import CLUSTER_DIRECTORIES, CLUSTER_QUEUES

#: a node's reply saying it ran nothing: the slot moved or is moving (``MovedError`` is an
#: ``AskError``), or the cluster is failing over
REDIRECTIONS = (AskError, TryAgainError, ClusterDownError)
#: sends of one write on its node before a redirection is raised to the caller
NODE_TRIES = 5
#: seconds between tries while the cluster says it is down or busy (``TRYAGAIN``)
NODE_PAUSE = 0.25


class LayoutError(redis.RedisError):
    """The server is not what the layout needs: a cluster for ``layout: cluster``, a single
    server (or Sentinel) for the default layout. One layout per fleet."""


class NodeConnection(KernelTimeouts, redis.Connection):
    """A plain TCP connection to a node, its timeout kept by the kernel (TLS ones keep
    redis-py's ``SSLConnection``)."""


class ClusterClient(RedisCluster):
    """A ``RedisCluster`` with what forkq's senders look for: the URL's ``WAIT`` setting, and
    the names whose ``SADD`` into a directory this client already sent."""

    #: (replicas, timeout in ms) every write waits for, or None
    forkq_wait: tuple[int, int] | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: (directory, name) pairs whose ``SADD`` this client already sent
        self.known: set[tuple[str, str]] = set()


def client(target: urls.Target, options: dict) -> ClusterClient:
    """A cluster client from the URL's start nodes; a node that is not in cluster mode is
    refused with ``LayoutError``, naming the URL."""
    nodes = [ClusterNode(host, port) for host, port in target.cluster]
    found = settings(target, options)
    if not found.get("ssl"):
        found["connection_class"] = NodeConnection
    try:
        made = ClusterClient(startup_nodes=nodes, **found)
    except (redis.RedisError, RedisClusterException) as exc:
        raise connect_error(target, exc) from exc
    made.forkq_wait = wait_setting(target)
    return made


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
    """``connection.send_commands`` for a cluster: each command (or ``MULTI`` ... ``EXEC``
    block, cut per slot by ``_units``) to its key's node, with a ``WAIT`` after it when the
    URL asks (``send_on_node``); an ``SADD`` into a directory only once per client (its reply
    is then 0)."""
    replies: list = []
    for unit in _units(cluster, commands):
        command = unit[0]
        if command[0] == "SADD" and command[1].endswith(CLUSTER_DIRECTORIES):
            names = [name for name in command[2:] if (command[1], name) not in cluster.known]
            if names:
                replies.append(cluster.execute_command("SADD", command[1], *names))
                cluster.known.update((command[1], name) for name in names)
            else:
                replies.append(0)
        elif len(unit) == 1 and cluster.forkq_wait is None:
            replies.append(cluster.execute_command(*command))
        else:
            replies += send_on_node(cluster, unit)
    return replies


def _units(cluster: ClusterClient, commands: list[tuple]) -> list[list[tuple]]:
    """``commands`` cut into what goes to one node at once: a command, or a MULTI ... EXEC
    block. A block over several slots (a push to a queue's level and the directories of the
    meta slot) becomes one per slot, the meta slot's first: what a block keeps together is a
    job's list and its sorted set, which share their queue's tag."""
    units: list[list[tuple]] = []
    block: list[tuple] | None = None
    for command in commands:
        if command[0] == "MULTI":
            block = []
        elif command[0] == "EXEC" and block is not None:
            units += _per_slot(cluster, block)
            block = None
        elif block is not None:
            block.append(command)
        else:
            units.append([command])
    return units


def _per_slot(cluster: ClusterClient, block: list[tuple]) -> list[list[tuple]]:
    directories = [[c] for c in block if c[0] == "SADD" and c[1].endswith(CLUSTER_DIRECTORIES)]
    by_slot: dict[int, list[tuple]] = {}
    for command in block:
        if [command] not in directories:
            by_slot.setdefault(cluster.keyslot(_key_of([command])), []).append(command)
    meta = cluster.keyslot(CLUSTER_QUEUES)
    ordered = sorted(by_slot.items(), key=lambda item: item[0] != meta)
    return directories + [[("MULTI",), *group, ("EXEC",)] if len(group) > 1 else group
                          for _, group in ordered]


def send_on_node(cluster: ClusterClient, unit: list[tuple], short=check_wait) -> list:
    """``unit`` (a command, or a MULTI ... EXEC block on one slot) in one write on a
    connection of its key's primary, followed by ``WAIT`` when the URL has ``wait_replicas``;
    its replies. Too few confirmations go to ``short(count, wait)``, which raises
    ``ReplicaTimeoutError`` unless the caller only logs. A redirection (the node ran nothing)
    sends it again where the cluster says (``_redirected``), up to ``NODE_TRIES`` times; a
    reply that is another error is raised after every reply was read."""
    key = _key_of(unit)
    wait = cluster.forkq_wait
    node, asking = cluster.get_node_from_key(key), False
    for _ in range(NODE_TRIES):
        sent = [("ASKING",)] * asking + unit + ([("WAIT", *wait)] if wait else [])
        replies = _exchange(cluster, node, sent)[asking:]
        redirection = next((r for r in replies if isinstance(r, REDIRECTIONS)), None)
        if redirection is None:
            break
        node, asking = _redirected(cluster, redirection, key)
    else:
        raise redirection
    if wait:
        short(replies.pop(), wait)
    failed = next((r for r in replies if isinstance(r, redis.ResponseError)), None)
    if failed is not None:
        raise failed
    return replies


def _key_of(unit: list[tuple]) -> str:
    """The first key the unit's commands name (a script's first key)."""
    for command in unit:
        if command[0] in ("EVALSHA", "EVAL"):
            return command[3]
        if len(command) > 1:
            return command[1]
    raise ValueError(f"no key in {unit!r}")


def _exchange(cluster: ClusterClient, node: ClusterNode, commands: list[tuple]) -> list:
    """``commands`` in one write on a pooled connection of ``node``; the replies, an error
    reply as its exception (read, not raised, so that the connection stays in step)."""
    pool = cluster.get_redis_connection(node).connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command(connection.pack_commands(commands))
        return [_reply(connection) for _ in commands]
    except (redis.ConnectionError, redis.TimeoutError):
        connection.disconnect()
        relearn(cluster)
        raise
    finally:
        pool.release(connection)


def _reply(connection):
    try:
        return connection.read_response()
    except redis.ResponseError as error:
        return error


def _redirected(cluster: ClusterClient, error, key: str) -> tuple[ClusterNode, bool]:
    """Where to send again after ``error``, and whether with ``ASKING`` first: ``MOVED``
    patches the slot table; ``ASK`` names the node importing the slot; a cluster down or busy
    gets a pause and a fresh slot table."""
    if isinstance(error, MovedError):
        cluster.nodes_manager.move_slot(error)
    elif isinstance(error, AskError):
        node = cluster.get_node(error.host, error.port)
        if node is not None:
            return node, True
    else:
        time.sleep(NODE_PAUSE)
        relearn(cluster)
    return cluster.get_node_from_key(key), False


def relearn(cluster: ClusterClient) -> None:
    """After a node stopped answering (a failover may be under way): have the cluster client
    read the slot table again, so that the next try goes to the new primary. A cluster still
    failing over may not answer yet: the next failure tries again."""
    try:
        cluster.nodes_manager.initialize()
    except Exception:  # the caller's retry (with back-off) comes back here
        pass


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
