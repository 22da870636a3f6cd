import collections
import random

import pytest

from forkq.worker import ordering
from forkq.config import Queue


def test_strict_order_is_kept():
    queues = (Queue("a"), Queue("b"), Queue("c"))
    assert all(ordering.fetch_order(queues, True) == ["a", "b", "c"] for _ in range(50))


def test_weighted_first_choice_follows_weights():
    queues = (Queue("a", 6), Queue("b", 3), Queue("c", 1))
    rng = random.Random(7)
    firsts = collections.Counter(ordering.fetch_order(queues, False, rng.random)[0]
                                 for _ in range(20_000))
    assert firsts["a"] / 20_000 == pytest.approx(0.6, abs=0.02)
    assert firsts["b"] / 20_000 == pytest.approx(0.3, abs=0.02)
    assert firsts["c"] / 20_000 == pytest.approx(0.1, abs=0.02)


def test_weighted_order_lists_every_queue_once():
    queues = (Queue("a", 5), Queue("b", 1))
    assert sorted(ordering.fetch_order(queues, False)) == ["a", "b"]


@pytest.mark.parametrize("queues, threads, expected", [
    ((Queue("a"), Queue("b")), 2, ("a", "b")),
    ((Queue("a", 3), Queue("b", 1)), 6, ("a", "b", "a", "a", "a", "b")),
    ((Queue("a"), Queue("b"), Queue("c")), 2, ("a", "b", "c")),
])
def test_idle_plan_covers_every_queue_first(queues, threads, expected):
    assert ordering.idle_plan(queues, threads) == expected


def test_idle_queue_rotates():
    plan = ("a", "b", "c")
    assert [ordering.idle_queue(plan, 0, r) for r in range(4)] == ["a", "b", "c", "a"]

