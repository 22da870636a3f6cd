"""``wait_replicas``: the setting a client carries and the check of a ``WAIT``'s reply, shared by
the plain, Sentinel, asyncio and cluster clients (``__init__.py``, ``aio.py``, ``cluster.py``).

A ``WAIT`` counts the replicas that confirmed every write its own connection made before it,
so it must follow the writes it covers on the same connection (in a cluster: a connection of
the writes' node). Too few confirmations after a push raise ``ReplicaTimeoutError``: the job
is on the primary but a failover now would lose it, and only the producer can decide what to
do (push again, report). After a fetch acknowledgement they are logged instead
(``ReplicaWatch`` in ``__init__.py``).
"""

from __future__ import annotations

import redis

from .urls import Target


class ReplicaTimeoutError(redis.RedisError):
    """A write reached the primary, but fewer replicas than ``wait_replicas`` confirmed it."""


def wait_setting(target: Target) -> tuple[int, int] | None:
    """(replicas, timeout in ms) every write waits for, or None."""
    return ((target.wait_replicas, int(target.wait_timeout * 1000))
            if target.wait_replicas else None)


def check_wait(confirmed: int, wait: tuple[int, int]) -> None:
    """Raise ``ReplicaTimeoutError`` when a write's ``WAIT`` got too few confirmations."""
    if confirmed < wait[0]:
        raise ReplicaTimeoutError(
            f"written to the Redis primary but confirmed by {confirmed} of {wait[0]} "
            f"replica(s) within {wait[1]} ms (wait_replicas, wait_timeout): a failover now "
            f"would lose it")
