"""The pool a process's threads share: ``WaitingPool`` makes a thread wait for a free
connection rather than fail, and hands back ready connections without redis-py's queue.

``PoolTimeoutError`` (re-exported as ``forkq.connection.PoolTimeoutError``) says the wait ran
out; ``connection.make_shared_client`` builds the pool with ``POOL_SIZE`` and ``POOL_WAIT``.
"""

from __future__ import annotations

import os
import threading

import redis
from redis.sentinel import SentinelConnectionPool

#: what redis-py's blocking pool says when its wait ran out
_POOL_EMPTY = "No connection available."


class PoolTimeoutError(redis.ConnectionError):
    """Every connection of a client stayed busy for ``POOL_WAIT`` seconds."""


class WaitingPool(redis.BlockingConnectionPool):
    """A pool that makes a thread wait for a free connection instead of failing.

    redis-py's default pool raises ``MaxConnectionsError`` as soon as 100 connections are out
    (a web server with 200 threads enqueueing at once); waiting a little is what a caller
    wants, and a wait that runs out says why.

    A connection given back goes on a stack of ready ones, and the next thread takes it from
    there after a liveness check: the blocking pool's queue and bookkeeping cost about 20 µs a
    checkout, a third of a push's CPU. While a thread waits in the blocking pool, connections
    go back to its queue instead, so that the waiter gets them. A forked child leaves the stack
    alone (its lock may have been held at the fork) and uses redis-py's path, which resets the
    pool. redis-py's optional connection metrics count a ready connection as in use."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._ready: list = []
        self._ready_lock = threading.Lock()
        #: threads waiting in the blocking pool
        self._waiting = 0
        self._ready_pid = os.getpid()

    def get_connection(self, *args, **kwargs):
        if self._ready_pid != os.getpid():
            return self._wait_for_one(*args, **kwargs)
        with self._ready_lock:
            connection = self._ready.pop() if self._ready else None
            if connection is None:
                self._waiting += 1
        if connection is not None:
            return self._checked(connection)
        try:
            return self._wait_for_one(*args, **kwargs)
        finally:
            with self._ready_lock:
                self._waiting -= 1

    def release(self, connection) -> None:
        # A connection the pool no longer owns (another process's, or a Sentinel pool's old
        # primary's) or one marked for reconnection takes redis-py's path, which drops it.
        if self._ready_pid == os.getpid() and self.owns_connection(connection) and \
                not connection.should_reconnect():
            with self._ready_lock:
                if not self._waiting:
                    self._ready.append(connection)
                    return
        super().release(connection)

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the pool's connections; ``inuse_connections=False`` (what a Sentinel pool asks
        when the primary moved) closes the idle ones, the ready stack's included, which go
        back to the blocking pool's queue."""
        super().disconnect(inuse_connections)
        if inuse_connections or self._ready_pid != os.getpid():
            return
        with self._ready_lock:
            idle, self._ready = self._ready, []
        for connection in idle:
            connection.disconnect()
            super().release(connection)

    def _checked(self, connection):
        """A ready connection, reconnected once when the server closed it or it holds stray
        data, as redis-py's own checkout does."""
        try:
            connection.connect()
            try:
                stale = connection.can_read()
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                stale = True
            if stale:
                connection.disconnect()
                connection.connect()
        except BaseException:
            super().release(connection)
            raise
        return connection

    def _wait_for_one(self, *args, **kwargs):
        try:
            return super().get_connection(*args, **kwargs)
        except redis.ConnectionError as exc:
            if str(exc) != _POOL_EMPTY:
                raise
            raise PoolTimeoutError(
                f"all {self.max_connections} Redis connections of this process stayed busy for "
                f"{self.timeout:g} s (forkq.connection.POOL_SIZE, POOL_WAIT); is Redis slow, or "
                f"do threads hold connections (pubsub, blocking commands)?") from None


class SentinelWaitingPool(SentinelConnectionPool, WaitingPool):
    """A ``WaitingPool`` whose connections follow a Sentinel-managed primary."""
