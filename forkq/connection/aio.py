"""asyncio connections that follow a Sentinel-managed primary, for the asyncio client (``aio.py``).

The asyncio twins of ``sentinel.py``'s, for the same reason: redis-py's asyncio
``SentinelManagedConnection`` asks the sentinels for the primary only in ``connect()``, which
its pool calls when it hands a connection out. A connection that reconnects another way (a
command sent on a connection found closed, a retry or a health check, which go through
``connect_check_health()``) goes back to the host and port it had: the dead primary.
``FollowingConnection`` asks the sentinels on every (re)connect, however it is reached.

A change of primary is logged once per process (``sentinel.note_primary``), shared with the
synchronous connections. Between the primary's death and the promotion connecting fails with
``MasterNotFoundError``, a ``ConnectionError``, as for the synchronous client.
"""

from __future__ import annotations

from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from . import sentinel
from .urls import ShowsURL, Target


class FollowingConnection(ShowsURL, SentinelManagedConnection):
    """A connection to the current primary of its service, looked up at each (re)connect."""

    async def connect_check_health(self, check_health: bool = True,
                                   retry_socket_connect: bool = True):
        if self.is_connected:
            return
        pool = self.connection_pool
        self.host, self.port = address = await pool.get_master_address()
        sentinel.note_primary(pool.service_name, address)
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
