"""The time-limit watchdog: one thread, callbacks at deadlines, nothing after close."""

import threading
import time

import pytest

from forkq.flow.timelimit import Watchdog, limits
from helpers import wait_for


@pytest.fixture
def watchdog():
    dog = Watchdog()
    dog.start()
    yield dog
    dog.halt()
    dog.join(5)


def test_soft_then_hard_callbacks_fire_once_each_at_their_deadlines(watchdog):
    fired = []
    started = time.monotonic()
    watchdog.watch(0.1, 0.3, lambda: fired.append(("soft", time.monotonic() - started)),
                   lambda: fired.append(("hard", time.monotonic() - started)))
    wait_for(lambda: len(fired) == 2)
    time.sleep(0.2)
    assert [name for name, _ in fired] == ["soft", "hard"]
    assert 0.1 <= fired[0][1] < 0.3 <= fired[1][1] < 1.0
    assert not watchdog.entries


def test_a_closed_watch_fires_nothing_and_many_watches_share_one_thread(watchdog):
    fired = []
    threads = threading.active_count()
    entries = [watchdog.watch(0.2, 0.3, lambda: fired.append(1), lambda: fired.append(2))
               for _ in range(50)]
    late = watchdog.watch(None, 0.1, None, lambda: fired.append("late"))
    assert threading.active_count() == threads
    assert [entry.close() for entry in entries] == [False] * 50
    wait_for(lambda: fired == ["late"])
    time.sleep(0.4)
    assert fired == ["late"] and not late.close()


@pytest.mark.parametrize("payload, expected", [
    ({}, (None, None)),
    ({"soft_time_limit": 2, "time_limit": 5.5}, (2.0, 5.5)),
    ({"soft_time_limit": "2", "time_limit": True}, (None, None)),
    ({"time_limit": -1, "soft_time_limit": float("nan")}, (None, None)),
])
def test_limits_read_from_the_payload_ignore_unusable_values(payload, expected):
    assert limits(payload) == expected
