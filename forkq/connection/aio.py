"""asyncio connections: one client per running event loop, and Sentinel primaries followed.

Used by the asyncio client (``aio.py``) and the asyncio result reader (``results.aget``), in
any process of the application, in the thread of the event loop that awaits them. Importing
this module imports ``redis.asyncio``; a producer that never awaits does not import it.

An asyncio Redis client belongs to the event loop that made it: ``redis(source)`` keeps one per
running loop and URL, opened on first use, built from the URL as the synchronous client is
(``connection.make_client``); ``send`` makes one round trip of commands (with the URL's
``wait_replicas``); ``aclose`` closes the running loop's clients.

On a Redis Cluster URL the client is redis-py's asyncio ``RedisCluster``: each command goes
to its key's primary, and ``send``'s pipeline is split by node (the push's ``SADD`` into the
directory of queues, in another slot, goes with every push here).

On a Sentinel URL the connections follow the primary: the asyncio twins of ``sentinel.py``'s,
for the same reason: redis-py's asyncio ``SentinelManagedConnection`` asks the sentinels for the
primary only in ``connect()``, which its pool calls when it hands a connection out. A connection
that reconnects another way (a command sent on a connection found closed, a retry or a health
check, which go through ``connect_check_health()``) goes back to the host and port it had: the
dead primary. ``FollowingConnection`` asks the sentinels on every (re)connect, however it is
reached.

A change of primary is logged once per process (``sentinel.note_primary``), shared with the
synchronous connections. Between the primary's death and the promotion connecting fails with
``MasterNotFoundError``, a ``ConnectionError``, as for the synchronous client.
"""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from . import SOCKET_TIMEOUT, check_wait, cluster, sentinel, urls, wait_setting
from .source import default_source
from ..errors import ClusterUnsupported
from .urls import ShowsURL, Target


class FollowingConnection(ShowsURL, SentinelManagedConnection):
    """A connection to the current primary of its service, looked up at each (re)connect."""

    async def connect_check_health(self, check_health: bool = True,
                                   retry_socket_connect: bool = True):
        if self.is_connected:
            return
        pool = self.connection_pool
        self.host, self.port = address = await pool.get_master_address()
        sentinel.note_primary(self.shown_url, pool.service_name, address)
        await super().connect_check_health(check_health=check_health,
                                           retry_socket_connect=retry_socket_connect)

    async def _connect_retry(self):
        await self.connect_check_health(check_health=self.connection_pool.check_connection,
                                        retry_socket_connect=False)


class FollowingSSLConnection(FollowingConnection, SSLConnection):
    pass


class FollowingPool(SentinelConnectionPool):
    """A pool on the current primary whose ``aclose()`` (the client's) also closes the
    connections to the sentinels, which redis-py's leaves open."""

    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()


def primary_pool(target: Target, **settings) -> FollowingPool:
    """An asyncio pool on the current primary of ``target``'s service, as
    ``sentinel.primary_pool`` makes the synchronous one."""
    return sentinel.primary_pool(target, FollowingPool, sentinel_class=Sentinel,
                                 connection_classes=(FollowingConnection, FollowingSSLConnection),
                                 **settings)


#: asyncio Redis clients of each running event loop, by URL
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]]" = \
    weakref.WeakKeyDictionary()


def redis(source=None) -> aioredis.Redis:
    """The running loop's asyncio client on the Redis of ``source`` (a ``source.Source``;
    default, the process's); its URL is resolved as for the synchronous client."""
    url = (source or default_source()).url()
    loop = asyncio.get_running_loop()
    by_url = _clients.get(loop)
    if by_url is None:  # a loop's first push: the time to let go of closed ones
        _forget_closed_loops()
        by_url = _clients[loop] = {}
    found = by_url.get(url)
    if found is None:
        found = by_url[url] = _make_client(url)
    return found


def own_client(source=None) -> aioredis.Redis:
    """A client with a pool of its own on ``source``'s Redis, for one blocking wait (the
    loop's shared pool is bounded); the caller closes it (``aclose()``)."""
    return _make_client((source or default_source()).url())


def _forget_closed_loops() -> None:
    """Drop the clients of loops that were closed without ``aclose()`` (each
    ``asyncio.run`` is a new loop): the clients hold their loop, so the weak keys alone never
    let go. Their sockets close when the clients are collected."""
    for loop in [loop for loop in _clients if loop.is_closed()]:
        del _clients[loop]


def _make_client(url: str) -> aioredis.Redis:
    """An asyncio client on the URL as ``urls.parse`` reads it (its query parameters,
    ``wait_replicas``), the way ``connection.make_client`` builds the synchronous one; on a
    Sentinel URL its connections follow the primary (``primary_pool``); on a cluster URL it is
    redis-py's asyncio ``RedisCluster``, as the synchronous one is ``cluster.client``."""
    target = urls.parse(url)
    options = dict(socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=5.0)
    if target.cluster is not None:
        return _cluster_client(target, options)
    settings = dict(options, decode_responses=True, **target.options)
    found = aioredis.Redis.from_pool(_pool(target, settings))
    found.forkq_wait = wait_setting(target)
    return found


def _cluster_client(target: Target, options: dict) -> AsyncCluster:
    """Each command to its key's primary; its first command finds the slot table. A
    ``wait_replicas`` is refused: its ``WAIT`` must follow the push on the key's node
    (``cluster.send_on_node``), which only the synchronous client does."""
    if wait_setting(target) is not None:
        raise ClusterUnsupported("wait_replicas with the asyncio client (forkq.aio)",
                                 "push with the synchronous client (perform_async) where a "
                                 "replica must confirm the push")
    nodes = [AsyncClusterNode(host, port) for host, port in target.cluster]
    found = AsyncCluster(startup_nodes=nodes, **cluster.settings(target, options))
    found.forkq_wait = None
    return found


def _pool(target: Target, settings: dict) -> aioredis.ConnectionPool:
    if target.sentinels is not None:
        return primary_pool(target, **settings)
    if settings.pop("ssl"):
        connection_class = aioredis.SSLConnection
    elif "path" in settings:
        connection_class = aioredis.UnixDomainSocketConnection
    else:
        connection_class = aioredis.Connection
    return aioredis.ConnectionPool(connection_class=connection_class, **settings)


async def aclose() -> None:
    """Close the running loop's clients; the next call opens new ones."""
    for found in _clients.pop(asyncio.get_running_loop(), {}).values():
        await found.aclose()


async def send(commands: list[tuple], source=None) -> list:
    """Send ``commands`` in one round trip (a pipeline without MULTI) and return the replies."""
    found = redis(source)
    wait = found.forkq_wait
    async with found.pipeline(transaction=False) as pipe:
        for command in [*commands, ("WAIT", *wait)] if wait is not None else commands:
            pipe.execute_command(*command)
        replies = await pipe.execute()
    if wait is not None:
        check_wait(replies.pop(), wait)
    return replies
