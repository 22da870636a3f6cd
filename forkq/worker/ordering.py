"""Queue order: pure functions deciding which queue a fetch looks at first, and the
``QueueOrder`` value a fetcher is given (the queues and whether their order is strict).

Strict queues (plain names) are always taken in the configured order. Weighted queues are
ordered at random on each fetch, each queue coming first with probability weight / total
(a weighted random permutation: sort by ``random() ** (1 / weight)``).

Idle threads block on one queue each; ``idle_plan`` spreads them so that every queue has a
waiter whenever there are at least as many idle threads as queues, the rest by weight.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from ..config import Queue


def fetch_order(queues: Sequence[Queue], strict: bool, rand=random.random) -> list[str]:
    if strict or len(queues) == 1:
        return [q.name for q in queues]
    keyed = sorted(queues, key=lambda q: rand() ** (1.0 / q.weight), reverse=True)
    return [q.name for q in keyed]


@dataclass(frozen=True)
class QueueOrder:
    """The configured queues and how a fetch orders them: strict (plain names) or by weight."""

    queues: tuple[Queue, ...]
    strict: bool

    def names(self) -> list[str]:
        return [q.name for q in self.queues]

    def order(self, rand=random.random) -> list[str]:
        """The queue names in the order one fetch looks at them."""
        return fetch_order(self.queues, self.strict, rand)


def idle_plan(queues: Sequence[Queue], threads: int) -> tuple[str, ...]:
    """Queue names for idle threads: each queue once, then the rest in proportion to weight."""
    plan = [q.name for q in queues]
    total = sum(q.weight for q in queues)
    extra = max(0, threads - len(plan))
    shares = [(q.weight * extra / total, q.name) for q in queues]
    counts = {name: int(share) for share, name in shares}
    leftover = extra - sum(counts.values())
    for _, name in sorted(shares, key=lambda s: s[0] - int(s[0]), reverse=True)[:leftover]:
        counts[name] += 1
    for q in queues:
        plan.extend([q.name] * counts[q.name])
    return tuple(plan)


def idle_queue(plan: Sequence[str], thread_index: int, idle_round: int) -> str:
    """The queue a thread blocks on; rotating each round so every queue gets visited."""
    return plan[(thread_index + idle_round) % len(plan)]
