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



def many(count, weight=1):
    return tuple(Queue(f"q{index}", weight) for index in range(count))


def test_few_queues_are_all_named_by_one_fetch():
    order = ordering.QueueOrder(many(ordering.HEAD), strict=False)
    assert sorted(order.order()) == sorted(order.names())
    assert order.sweep() is None


def test_many_strict_queues_name_the_first_then_all_in_order():
    order = ordering.QueueOrder(many(1000), strict=True)
    assert order.order() == [f"q{index}" for index in range(ordering.HEAD)]
    assert order.sweep() == order.names()


def test_many_weighted_queues_name_a_distinct_head_then_all():
    order = ordering.QueueOrder(many(1000), strict=False)
    head = order.order()
    assert len(head) == len(set(head)) == ordering.HEAD
    sweep = order.sweep()
    assert sorted(sweep) == sorted(order.names())
    start = sweep.index("q0")
    assert sweep[start:] + sweep[:start] == order.names()


def test_many_weighted_queues_come_first_by_weight():
    queues = (Queue("heavy", 50),) + many(50)
    order = ordering.QueueOrder(queues, strict=False)
    rng = random.Random(3)
    firsts = collections.Counter(order.order(rng.random)[0] for _ in range(20_000))
    assert firsts["heavy"] / 20_000 == pytest.approx(0.5, abs=0.02)
    assert firsts["q7"] / 20_000 == pytest.approx(0.01, abs=0.005)


def test_a_weighted_head_stops_short_rather_than_drawing_forever():
    queues = (Queue("huge", 10**9),) + many(ordering.HEAD)
    head = ordering.QueueOrder(queues, strict=False).order()
    assert head[0] == "huge" and 1 <= len(head) <= ordering.HEAD
