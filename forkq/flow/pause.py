"""Paused queues: workers stop taking jobs from them; producers keep pushing to them.

The paused state is the set ``forkq:paused`` of queue names (``keys.py``), so it survives
restarts of workers and of Redis (with persistence) and is shared by every worker on that
Redis. Written here only (``pause``, ``resume``), by the admin side (``forkq.api``,
``forkqctl``, the web UI); read twice a second by each worker process's control watch
(``control.py``), whose copy (``PausedView``) steers the idle ``BLMOVE`` waits away from
paused queues and, while it holds a paused queue, has every fetch script read the set itself
(``worker/fetch.py``: an ``EXISTS`` and a ``SISMEMBER`` per queue, inside the call a fetch
makes anyway; nothing while no queue is paused).

What pausing guarantees: within about a second every worker stops starting jobs of that queue
(jobs already running finish; a job a thread fetched before its process saw the pause may
still start); the jobs stay in the queue, in order, and its latency keeps growing.
"""

from __future__ import annotations


def pause(redis, keys, queue: str) -> bool:
    """Pause ``queue``; False when it was paused already."""
    return bool(redis.sadd(keys.paused, queue))


def resume(redis, keys, queue: str) -> bool:
    """Resume ``queue``; False when it was not paused."""
    return bool(redis.srem(keys.paused, queue))


def paused(redis, keys) -> set[str]:
    """The names of the paused queues (``str`` on a ``decode_responses`` client)."""
    return set(redis.smembers(keys.paused))


class PausedView:
    """One worker process's copy of the paused set, replaced whole by the control watch;
    read by every processor thread's idle wait (a reference read, no lock)."""

    def __init__(self) -> None:
        self.names: frozenset[str] = frozenset()

    def update(self, names) -> None:
        self.names = frozenset(name.decode() if isinstance(name, bytes) else name
                               for name in names)
