"""Resumable jobs for ``test_iterable.py``; each item's run is recorded in ``iter:items``."""

from __future__ import annotations

import time

import forkq


class Export(forkq.IterableJob):
    """Walks ``count`` numbers, ``pause`` seconds each; fails once at ``fail_at`` if given."""

    options = {"retry_in": lambda count, exc: 0}

    def build_enumerator(self, count, pause, fail_at=None, *, cursor):
        start = 0 if cursor is None else cursor + 1
        return ((n, n) for n in range(start, count))

    def each_iteration(self, n, count, pause, fail_at=None):
        if n == fail_at and forkq.redis().incr(f"iter:failed:{self.jid}") == 1:
            raise RuntimeError(f"item {n} failed")
        time.sleep(pause)
        forkq.redis().rpush("iter:items", n)


class Sparse(forkq.IterableJob):
    """Saves its cursor every 3 items only."""

    cursor_every = 3

    def build_enumerator(self, count, *, cursor):
        start = 0 if cursor is None else cursor + 1
        return ((n, n) for n in range(start, count))

    def each_iteration(self, n, count):
        forkq.redis().rpush("iter:items", n)
