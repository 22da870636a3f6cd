"""Redis clients from the configuration, made per process and never shared across ``fork()``.

``redis_url`` (config, ``REDIS_URL``) wins; without it every process of the app uses the
embedded server found through ``data_dir``. Clients are built lazily and dropped in a forked
child, so a preloaded module that enqueued at import cannot leak a socket into the children.
The client an application's threads share has a bounded pool that makes them wait for a free
connection (``pools.WaitingPool``) rather than fail when many enqueue at once.

URLs are read by ``urls.py``: TLS (``rediss://``), ACL users, Sentinel
(``redis+sentinel://``, connections that follow the primary: ``sentinel.py``), Redis Cluster
(``redis+cluster://``: ``cluster.py``) and the opt-in
``wait_replicas``: a push then returns only once that many replicas confirmed it
(``send_commands``), and the fetch acknowledgement waits the same way (``call_replicated``).
Connection errors name the URL, its passwords hidden.

Beside this module: ``source.py`` (which Redis and namespace a producer uses, from
``forkq.configure``, the environment and ``forkq.yml``), ``pools.py`` (the shared client's
pool), ``timeouts.py`` (socket timeouts the kernel keeps) and ``aio.py`` (the asyncio clients,
one per event loop).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import hiredis
import redis
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.sentinel import SentinelConnectionPool

from . import cluster, embedded, urls as redis_url, sentinel
from .pools import PoolTimeoutError, SentinelWaitingPool, WaitingPool  # noqa: F401 (API)
from .timeouts import KernelTimeouts
from .replication import ReplicaTimeoutError, check_wait, wait_setting  # noqa: F401 (API)
from ..errors import RedisUnavailableError
from ..log import logger

#: seconds a command may take before the client gives up; blocking fetches stay below it
SOCKET_TIMEOUT = 10.0
#: connections a client opens at most; more threads than this wait for a free one
POOL_SIZE = 50
#: seconds a thread waits for a free connection before ``PoolTimeoutError``
POOL_WAIT = 20.0
class ShownConnection(redis_url.ShowsURL, KernelTimeouts, Connection):
    pass


class ShownSSLConnection(redis_url.ShowsURL, SSLConnection):
    pass


class ShownUnixConnection(redis_url.ShowsURL, KernelTimeouts, UnixDomainSocketConnection):
    pass


def resolve_url(redis_url: str | None, data_dir: str) -> str:
    """The URL to connect to; without one configured, the embedded server must be running."""
    if redis_url:
        return redis_url
    if not embedded.is_running(data_dir):
        raise RedisUnavailableError(
            f"no Redis URL configured (forkq.configure(redis_url=...), REDIS_URL or forkq.yml) "
            f"and no embedded forkq Redis is running under {os.path.abspath(data_dir)}; "
            f"start one with 'forkq start' from the same directory")
    return embedded.socket_url(data_dir)


def make_client(url: str, single_connection_client: bool = False, **options) -> redis.Redis:
    """A client with its own connection pool; one per thread on the hot path."""
    options.setdefault("socket_timeout", SOCKET_TIMEOUT)
    options.setdefault("socket_connect_timeout", 5.0)
    target = redis_url.parse(url)
    if target.cluster is not None:
        return cluster.client(target, options)
    pool = _pool(target, redis.ConnectionPool, SentinelConnectionPool, options)
    return _client(pool, target, single_connection_client)


def make_shared_client(url: str) -> redis.Redis:
    """A client that any number of an application's threads share: past ``POOL_SIZE``
    connections they wait for a free one (``WaitingPool``)."""
    target = redis_url.parse(url)
    options = dict(socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=5.0,
                   max_connections=POOL_SIZE, timeout=POOL_WAIT)
    if target.cluster is not None:
        return cluster.client(target, options)
    return _client(_pool(target, WaitingPool, SentinelWaitingPool, options), target, False)


def _pool(target: redis_url.Target, plain_class, sentinel_class, options: dict):
    """A pool of ``plain_class`` or ``sentinel_class``; the URL's own parameters (a
    ``socket_timeout`` in its query) win over ``options``, which are forkq's defaults."""
    settings = dict(options, decode_responses=True, **target.options)
    if target.sentinels is not None:
        return sentinel.primary_pool(target, sentinel_class, **settings)
    if settings.pop("ssl"):
        connection_class = ShownSSLConnection
    elif "path" in settings:
        connection_class = ShownUnixConnection
    else:
        connection_class = ShownConnection
    return plain_class(connection_class=connection_class, shown_url=target.shown, **settings)


def _client(pool, target: redis_url.Target, single_connection_client: bool) -> redis.Redis:
    client = redis.Redis(connection_pool=pool, single_connection_client=single_connection_client)
    client.auto_close_connection_pool = True  # closing the client closes its own pool
    #: (replicas, timeout in ms) every write waits for, or None
    client.forkq_wait = wait_setting(target)
    return client


class LazyClient:
    """A client built on first use and forgotten in a forked child.

    Shared by the process (one pool) by default. In a worker, ``per_thread`` gives each thread
    a client with a single connection of its own: ten threads sharing one pool spend more CPU
    on its lock, under the GIL, than on their Redis calls (about 130 µs a call instead of 90)."""

    def __init__(self) -> None:
        self.per_thread = False
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def get(self, url_factory) -> redis.Redis:
        if self.per_thread:
            client = getattr(self._local, "client", None)
            if client is None:
                client = self._local.client = make_client(self._resolve(url_factory),
                                                          single_connection_client=True)
            return client
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = make_shared_client(self._resolve(url_factory))
            return self._client

    def _resolve(self, url_factory) -> str:
        with self._lock:
            if self._url is None:
                self._url = url_factory()
            return self._url

    def reset(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
        self._forget()

    def _forget(self) -> None:
        self._client: redis.Redis | None = None
        self._url: str | None = None
        self._lock = threading.RLock()
        self._local = threading.local()


def send_commands(client: redis.Redis, commands: list[tuple]) -> list:
    """Send ``commands`` in one write and read their replies: one round trip.

    The enqueue path's cost is mostly redis-py's pipeline machinery, not Redis; this uses a
    connection of the client directly. A connection found broken while sending (a pooled one
    from before a Redis restart or a failover) is reconnected once; nothing was executed on it.
    With ``wait_replicas``, a ``WAIT`` follows in the same write, and too few confirmations
    raise ``ReplicaTimeoutError`` (the commands were executed on the primary). A cluster
    client sends each command to its node (``cluster.send_commands``)."""
    if _is_cluster(client):
        return cluster.send_commands(client, commands)
    wait = getattr(client, "forkq_wait", None)
    if wait is not None:
        commands = [*commands, ("WAIT", *wait)]
    replies = _send(client, commands)
    if wait is not None:
        check_wait(replies.pop(), wait)
    return replies


def run_script(client: redis.Redis, script, keys: list, args: list) -> Any:
    """``script``'s reply (a ``scripts.Script``, reloaded after NOSCRIPT), sent as
    ``send_commands`` sends: for the hot paths, where redis-py's command layers cost more than
    the call."""
    return script.send_by(lambda command: send_commands(client, [command])[0],
                          script.command(keys, args))


def call(client: redis.Redis, *command) -> Any:
    """One command's reply, sent as ``send_commands`` sends (a connection of the client
    directly: about half the CPU of redis-py's ``execute_command``) but without its ``WAIT``:
    for a write no replica need confirm, a job's result record (``results.py``)."""
    if _is_cluster(client):
        return client.execute_command(*command)
    return _send(client, [command])[0]


def _is_cluster(client) -> bool:
    # redis-py's cluster client is a typing Protocol: its isinstance check costs 2 µs, a
    # plain client's (never a cluster client) a tenth of that
    return not isinstance(client, redis.Redis) and isinstance(client, cluster.ClusterClient)


def call_replicated(client: redis.Redis, connection, *command, disable_decoding=False):
    """Send ``command`` on ``connection`` (one taken from ``client``'s pool) and return its
    reply; with ``wait_replicas``, a ``WAIT`` follows in the same write.

    For the fetch acknowledgement: too few confirmations are logged (``replicas``), never
    raised, since the reply holds jobs this thread now owns."""
    wait = getattr(client, "forkq_wait", None)
    if wait is None:
        connection.send_packed_command([hiredis.pack_command(command)])
        return connection.read_response(disable_decoding=disable_decoding)
    connection.send_packed_command(connection.pack_commands([command, ("WAIT", *wait)]))
    try:
        reply = connection.read_response(disable_decoding=disable_decoding)
    except redis.ResponseError:
        # The caller may retry on this connection (NOSCRIPT): read the WAIT's reply too, or
        # the retry would take it for its own.
        connection.read_response()
        raise
    replicas.confirmed(connection.read_response(), wait[0])
    return reply


class ReplicaWatch:
    """Logs when replicas stop confirming the fetch acknowledgements, and when they resume:
    two lines per episode, not one per fetch."""

    def __init__(self) -> None:
        self.short = False

    def confirmed(self, count: int, wanted: int) -> None:
        short = count < wanted
        if short == self.short:
            return
        self.short = short
        if short:
            logger.warning("Redis replicas confirm fewer writes than wait_replicas=%d (%d did): "
                           "acknowledgements may be undone by a failover, and jobs run again",
                           wanted, count)
        else:
            logger.warning("Redis replicas confirm writes again (wait_replicas=%d)", wanted)


replicas = ReplicaWatch()


def _send(client: redis.Redis, commands: list[tuple]) -> list:
    pool = client.connection_pool
    own = client.connection
    connection = own or pool.get_connection()
    try:
        packed = [pack(commands)]
        try:
            connection.send_packed_command(packed)
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()
            connection.send_packed_command(packed)
        return [connection.read_response() for _ in commands]
    except BaseException:
        connection.disconnect()
        raise
    finally:
        if own is None:
            pool.release(connection)


def pack(commands: list[tuple]) -> bytes:
    """``commands`` in the Redis protocol, in one buffer: what redis-py's packer makes of
    them (it is hiredis's too), without its per-command splitting and copying."""
    return b"".join([hiredis.pack_command(command) for command in commands])
