"""The periodic scheduler as the master hosts it: from its loop, on a connection per call.

Runs in the master of ``forkq start``, single-threaded. Entries come from ``forkq.yml``'s
``periodic:`` and from code (``forkq.register_periodic`` at import of a ``require:`` module);
after the preload ``from_config`` checks that every entry names a job the app registered and
that its args fit ``perform``. Then, at most every ``min(1, periodic_lease / 3)`` seconds, the
loop calls ``run``: open a client with short socket timeouts, ``PeriodicScheduler.tick``
(lease, claim, enqueue: ``leader.py``), close it. A clean stop releases the lease.

Why in the master and not in a supervised child: the master is the member of the fleet whose
life the lease stands for: kill -9 of the master must end its leadership, and a child that
outlived it (or died alone and was restarted under a new identity) would blur that. Hosting
the scheduler here needs no extra process, pipe or restart policy. Its cost is a short Redis
exchange inside the loop, kept harmless this way: no connection exists across a fork (it is
opened and closed inside ``run``), every socket operation times out after ``SOCKET_TIMEOUT``,
and after an error the next attempt waits ``RETRY_AFTER``, so a Redis outage delays the
loop by at most ``SOCKET_TIMEOUT`` every ``RETRY_AFTER`` seconds. An error is logged once,
when Redis goes away, and again when it is back.

The identity is ``hostname:master-pid:hex``, as Sidekiq names processes; ``status()`` feeds
``status.json``, from which the metrics exporter serves ``forkq_periodic_enqueued_total`` and
``forkq_periodic_leader``.
"""

from __future__ import annotations

import os
import time

from redis import RedisError

from .. import client, connection
from ..errors import ConfigError, ForkqError
from ..ident import hostname
from ..job import resolve
from ..options import Arity
from ..keys import keys_for
from ..log import logger
from . import Entry, check_classes, merge, periodic_fields, registered
from .leader import PeriodicScheduler, tick_text

#: seconds any socket operation of the master's periodic connection may take
SOCKET_TIMEOUT = 0.5
#: seconds before the next attempt after Redis failed
RETRY_AFTER = 2.0


def process_identity(master_pid: int) -> str:
    """``hostname:master-pid:hex``: random hex, so a restarted master is a new identity."""
    return f"{hostname()}:{master_pid}:{os.urandom(6).hex()}"


def check_entries(entries: list[Entry]) -> None:
    """After the preload: every class known, every ``args`` accepted by its ``perform``."""
    check_classes(entries, resolve)
    for entry in entries:
        try:
            Arity(resolve(entry.class_name)).check(len(entry.args), entry.class_name)
        except TypeError as exc:
            raise ConfigError(f"{entry.source}: periodic entry {entry.name!r}: 'args' "
                              f"{list(entry.args)!r}: {exc}") from None


class MasterPeriodic:
    """The master's periodic scheduler; ``run`` is one step of the master's loop."""

    def __init__(self, config, entries: list[Entry], identity: str) -> None:
        self.url = connection.resolve_url(config.redis_url, config.data_dir)
        self.scheduler = PeriodicScheduler(entries, keys_for(config.layout, config.namespace),
                                           identity,
                                           self._enqueue, lease_ttl=config.periodic_lease)
        #: seconds between calls: the lease is renewed at least three times per TTL
        self.every = min(1.0, config.periodic_lease / 3)
        #: monotonic time before which ``run`` does nothing
        self.next_run = 0.0
        #: entry name → jobs this master enqueued (``forkq_periodic_enqueued_total``)
        self.enqueued = {entry.name: 0 for entry in entries}
        #: this master held the lease at the end of the last ``run``
        self.leading = False
        #: epoch seconds when Redis started failing, None while it answers
        self.failing_since: float | None = None
        #: the connection of the call in progress, which ``_enqueue`` (called back by the
        #: scheduler) pushes through; None between calls, so none survives into a fork
        self._redis = None

    @classmethod
    def from_config(cls, config, master_pid: int) -> "MasterPeriodic | None":
        """None when no entry is declared; ``ConfigError`` for an entry the app cannot run."""
        entries = merge(config.periodic, registered())
        if not entries:
            return None
        check_entries(entries)
        identity = process_identity(master_pid)
        logger.info("periodic: %d entries (%s); this master's identity is %s", len(entries),
                    ", ".join(entry.name for entry in entries), identity)
        return cls(config, entries, identity)

    @property
    def identity(self) -> str:
        return self.scheduler.leader.identity

    def run(self, monotonic: float) -> bool:
        """Enqueue due ticks if this master leads; True when ``status()`` changed."""
        if monotonic < self.next_run:
            return False
        before = (self.leading, sum(self.enqueued.values()))
        try:
            enqueued = self._call(self.scheduler.tick)
        except (RedisError, OSError, ForkqError) as exc:
            self._failed(exc)
            self.next_run = monotonic + RETRY_AFTER
            enqueued = []
        else:
            self._answered()
            self.next_run = monotonic + self.every
        for entry, tick, jid in enqueued:
            if jid is not None:
                self.enqueued[entry.name] += 1
            logger.debug("periodic %r: tick %s enqueued as %s", entry.name, tick_text(tick), jid)
        self.leading = self.scheduler.leader.is_leader(time.time())
        return (self.leading, sum(self.enqueued.values())) != before

    def stop(self) -> None:
        """At a clean stop: release the lease so that another master leads at once."""
        if not self.scheduler.leader.is_leader(time.time()):
            return
        try:
            self._call(lambda redis, now: self.scheduler.stop(redis))
        except (RedisError, OSError, ForkqError) as exc:
            logger.warning("periodic: could not release the leader lease (%s); another "
                           "master takes it when it expires", exc)
        self.leading = False

    def status(self) -> dict:
        return {"identity": self.identity, "leader": self.leading,
                "enqueued": dict(self.enqueued)}

    def _call(self, step):
        redis = connection.make_client(self.url, socket_timeout=SOCKET_TIMEOUT,
                                       socket_connect_timeout=SOCKET_TIMEOUT)
        self._redis = redis
        try:
            return step(redis, time.time())
        finally:
            self._redis = None
            redis.close()

    def _enqueue(self, entry: Entry, tick: float) -> str | None:
        options = {} if entry.queue is None else {"queue": entry.queue}
        return client.default().push(resolve(entry.class_name), list(entry.args), options,
                                     fields=periodic_fields(entry, tick), redis=self._redis)

    def _failed(self, exc: Exception) -> None:
        if self.failing_since is None:
            self.failing_since = time.time()
            logger.warning("periodic: Redis unavailable (%s); no periodic job is enqueued by "
                           "this master until it is back", exc)

    def _answered(self) -> None:
        if self.failing_since is not None:
            logger.info("periodic: Redis is back after %.0f s", time.time() - self.failing_since)
            self.failing_since = None
