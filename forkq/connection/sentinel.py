"""Connections that follow a Sentinel-managed primary, in every process and thread that uses one.

redis-py's ``SentinelManagedConnection`` asks the sentinels for the primary only in
``connect()``, which its pool calls when it hands a connection out. A connection kept outside
the pool (the fetcher's busy-path connection, a per-thread single-connection client, a blocking
``BLMOVE``) reconnects after an error through ``connect_check_health()`` instead, to the host
and port it had: the dead primary. ``FollowingConnection`` asks the sentinels on every
(re)connect, however it is reached (its asyncio twin: ``connection/aio.py``).

A change of primary is logged once per process and deployment (``note_primary``: sentinels and
service, as the URL names them), whatever number of pools and threads see it. Between the primary's death and the promotion (``down-after-milliseconds`` plus
the election) connecting fails with ``MasterNotFoundError``, a ``ConnectionError``: callers back
off as for any outage (``health.py``).
"""

from __future__ import annotations

import os
import threading

from redis.connection import SSLConnection
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from ..log import logger
from .timeouts import KernelTimeouts
from .urls import ShowsURL, Target

#: the last primary seen, by the URL (passwords hidden) that names the sentinels and service
_primaries: dict[str, tuple[str, int]] = {}
_primaries_lock = threading.Lock()


def _new_lock_in_child() -> None:
    """A fork taken while another thread held the lock must not leave the child stuck on it."""
    global _primaries_lock
    _primaries_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


class FollowsPrimary:
    """A ``SentinelManagedConnection`` mixin: the current primary of its service is looked up
    at each (re)connect."""

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True):
        if self._sock:
            return
        pool = self.connection_pool
        self.host, self.port = address = pool.get_master_address()
        note_primary(self.shown_url, pool.service_name, address)
        super().connect_check_health(check_health=check_health,
                                     retry_socket_connect=retry_socket_connect)

    def _connect_retry(self):
        self.connect_check_health(check_health=self.connection_pool.check_connection,
                                  retry_socket_connect=False)


class FollowingConnection(ShowsURL, FollowsPrimary, KernelTimeouts, SentinelManagedConnection):
    """A plain TCP connection that follows the primary, its timeout kept by the kernel."""


class FollowingSSLConnection(ShowsURL, FollowsPrimary, SentinelManagedConnection, SSLConnection):
    """A TLS connection that follows the primary, with Python's socket timeout."""


def note_primary(deployment: str, service: str, address: tuple[str, int]) -> None:
    """Log a new primary for ``service`` of ``deployment`` (its URL) once in this process (not
    at the first lookup): two deployments may name their services alike ("mymaster")."""
    with _primaries_lock:
        previous = _primaries.get(deployment)
        if previous == address:
            return
        _primaries[deployment] = address
    if previous is not None:
        logger.warning("Redis primary of Sentinel service %r moved from %s:%s to %s:%s",
                       service, *previous, *address)


def primary_pool(target: Target, pool_class=SentinelConnectionPool, *, sentinel_class=Sentinel,
                 connection_classes=(FollowingConnection, FollowingSSLConnection), **settings):
    """A pool (of ``pool_class``, a ``SentinelConnectionPool``) on the current primary;
    ``settings`` are the servers' connection options, ``socket_*`` and ``ssl_*`` ones also
    the sentinels'. ``sentinel_class`` and the (plain, TLS) ``connection_classes`` are
    redis-py's synchronous or asyncio ones, as the pool is (``aio.py``)."""
    ssl = settings.pop("ssl", False)
    manager = sentinel_class(list(target.sentinels.addresses),
                             sentinel_kwargs=_sentinel_options(target, ssl, settings))
    connection_class = connection_classes[1] if ssl else connection_classes[0]
    return pool_class(target.sentinels.service, manager, connection_class=connection_class,
                      shown_url=target.shown, **settings)


def _sentinel_options(target: Target, ssl: bool, settings: dict) -> dict:
    """The sentinels' connection options: the servers' ``socket_*`` and ``ssl_*`` ones, TLS
    when the servers have it, and the URL's ``sentinel_username`` / ``sentinel_password``."""
    options = {key: value for key, value in settings.items()
               if key.startswith(("socket_", "ssl_")) and value is not None}
    if ssl:
        options["ssl"] = True
    options.update(target.sentinels.options)
    return options
