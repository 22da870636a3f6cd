"""The batches view: open batches (created, not yet succeeded), newest first, and one batch's
status (``flow/batch.py``).

Runs in whatever process reads (web UI, ``forkqctl``, tests). The index ``forkq:batches``
holds each batch until it succeeds; a batch that never succeeds (a job died) stays there until
its record expires (``expires_in``), and a listing drops such members (unless read-only).
"""

from __future__ import annotations

from ..flow.batch import BatchStatus, status
from .source import Store


class Batches:
    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def size(self) -> int:
        """Open batches: created and not yet succeeded (expired ones included until listed)."""
        return self.store.redis.zcard(self.store.keys.batches)

    def get(self, bid: str) -> BatchStatus | None:
        return status(bid, self.store.redis, self.store.keys)

    def page(self, offset: int = 0, count: int = 25) -> list[BatchStatus]:
        """Open batches, newest first."""
        redis, keys = self.store.redis, self.store.keys
        bids = redis.zrevrange(keys.batches, offset, offset + count - 1)
        found, gone = [], []
        for bid in bids:
            batch = self.get(bid)
            (found if batch is not None else gone).append(batch or bid)
        if gone and not self.store.read_only:
            redis.zrem(keys.batches, *gone)
        return found
