"""The batches view: open batches (created, not yet succeeded), newest first, and one batch's
status (``flow/batch.py``).

Runs in whatever process reads (web UI, ``forkqctl``, tests). The index ``forkq:batches``
holds each batch until it succeeds; a batch that never succeeds (a job died) stays there until
its record expires (``expires_in``), and a listing drops such members (unless read-only). In
the cluster layout the entry leaves the index in a step of its own after the success (or a
commit's last step may add it after a fast success): a listing drops succeeded batches too.
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
            # succeeded: the cluster layout's index entry may outlive it (batch_cluster.py)
            listed = batch is not None and not batch.success
            (found if listed else gone).append(batch if listed else bid)
        if gone and not self.store.read_only:
            redis.zrem(keys.batches, *gone)
        return found
