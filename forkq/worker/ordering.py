"""Queue order: pure functions deciding which queue a fetch looks at first, and the
``QueueOrder`` value a fetcher is given (the queues and whether their order is strict).

Strict queues (plain names) are always taken in the configured order. Weighted queues are
ordered at random on each fetch, each queue coming first with probability weight / total
(a weighted random permutation: sort by ``random() ** (1 / weight)``).

With more than ``HEAD`` queues, a fetch names only the first ``HEAD`` of its order
(``QueueOrder.order``: weighted ones drawn one after another by weight, which is how that
permutation starts, without ordering every queue), and names them all (``QueueOrder.sweep``)
only when none of those held a job: ordering, packing and sending 1,000 queue names on every
fetch cost milliseconds a call, and the busy path must not grow with the number of queues
(bench/scale.py). The sweep takes weighted queues from a random point of the configured
order, so the weights decide the first ``HEAD`` queues a fetch looks at, not the rest.

Idle threads block on one queue each; ``idle_plan`` spreads them so that every queue has a
waiter whenever there are at least as many idle threads as queues, the rest by weight.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass, field
from typing import Sequence

from ..config import Queue

#: queues the first call of a fetch names when more are configured
HEAD = 16
#: draws (per queue in the head) after which a weighted head stops short: with one queue
#: of overwhelming weight, drawing 16 distinct queues could take millions of draws
_DRAWS_PER_PICK = 4


def fetch_order(queues: Sequence[Queue], strict: bool, rand=random.random) -> list[str]:
    if strict or len(queues) == 1:
        return [q.name for q in queues]
    keyed = sorted(queues, key=lambda q: rand() ** (1.0 / q.weight), reverse=True)
    return [q.name for q in keyed]


def weighted_head(names: Sequence[str], cumulative: Sequence[int], count: int,
                  rand=random.random) -> list[str]:
    """Up to ``count`` distinct names drawn one after another, each in proportion to its
    weight among those not drawn yet (``cumulative``: running totals of the weights)."""
    total, head = cumulative[-1], []
    for _ in range(count * _DRAWS_PER_PICK):
        name = names[bisect.bisect_right(cumulative, rand() * total)]
        if name not in head:
            head.append(name)
            if len(head) == count:
                break
    return head


@dataclass(frozen=True)
class QueueOrder:
    """The configured queues and how a fetch orders them: strict (plain names) or by weight."""

    queues: tuple[Queue, ...]
    strict: bool
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _cumulative: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", tuple(q.name for q in self.queues))
        object.__setattr__(self, "_cumulative",
                           tuple(itertools.accumulate(q.weight for q in self.queues)))

    def names(self) -> list[str]:
        return list(self._names)

    def order(self, rand=random.random) -> list[str]:
        """The queue names one fetch looks at first, in order: all of them when there are at
        most ``HEAD``, else the first ``HEAD`` of the fetch's order."""
        if len(self._names) <= HEAD:
            return fetch_order(self.queues, self.strict, rand)
        if self.strict:
            return list(self._names[:HEAD])
        return weighted_head(self._names, self._cumulative, HEAD, rand)

    def sweep(self, rand=random.random) -> list[str] | None:
        """Every queue name, for a fetch whose ``order()`` found nothing; None when that
        already named them all. Weighted: from a random point of the configured order."""
        names = self._names
        if len(names) <= HEAD:
            return None
        if self.strict:
            return list(names)
        start = int(rand() * len(names))
        return list(names[start:] + names[:start])


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
