"""Unique-job locks: digest, option rules, and the lock on the real Redis under contention."""

from __future__ import annotations

import threading

import pytest

import forkq
from forkq.flow import unique
from forkq.keys import Keys
from helpers import wait_for

KEYS = Keys()


def take(redis, lock_digest: str, jid: str, ttl: float) -> bool:
    """A lock taken as the client's push script takes it (``SET NX PX``)."""
    return bool(redis.set(KEYS.unique(lock_digest, "default"), jid, nx=True,
                          px=max(int(ttl * 1000), 1)))


def test_the_digest_is_stable_and_ignores_key_order():
    a = unique.digest("app.Job", "default", [1, {"b": 2, "a": 1}])
    b = unique.digest("app.Job", "default", [1, {"a": 1, "b": 2}])
    assert a == b
    # pinned: a digest that changed between versions would let duplicates through at a deploy
    assert a == "f7738b5fd78ee0990ed578fe4264d3b87d020fb9a912b5cce19fe2c0a4bf8b73"


@pytest.mark.parametrize("other", [
    ("app.Other", "default", [1, {"a": 1, "b": 2}], None),
    ("app.Job", "low", [1, {"a": 1, "b": 2}], None),
    ("app.Job", "default", [2, {"a": 1, "b": 2}], None),
    ("app.Job", "default", [1, {"a": 1, "b": 2}], "user:42"),
])
def test_class_queue_args_or_key_change_the_digest(other):
    assert unique.digest(*other) != unique.digest("app.Job", "default", [1, {"a": 1, "b": 2}])


def test_a_user_key_stands_in_for_the_args():
    assert (unique.digest("app.Job", "default", [1], key="user:42")
            == unique.digest("app.Job", "default", [2], key="user:42"))


def test_a_digest_of_non_json_args_names_the_class():
    with pytest.raises(TypeError, match="app.Job: unique job arguments must be JSON"):
        unique.digest("app.Job", "default", [object()])


@pytest.mark.parametrize("options, expected", [
    ({}, None),
    ({"unique_for": 60}, (60.0, "success")),
    ({"unique_for": 0.5, "unique_until": "start"}, (0.5, "start")),
    ({"unique_for": 60, "unique_until": "success"}, (60.0, "success")),
])
def test_valid_options(options, expected):
    assert unique.validate_options(options, "app.Job") == expected


@pytest.mark.parametrize("options, message", [
    ({"unique_until": "start"}, "'unique_until' needs 'unique_for'"),
    ({"unique_for": 0}, "'unique_for' must be a positive number of seconds, not 0"),
    ({"unique_for": -1}, "not -1"),
    ({"unique_for": float("inf")}, "not inf"),
    ({"unique_for": float("nan")}, "not nan"),
    ({"unique_for": "60"}, "not '60'"),
    ({"unique_for": True}, "not True"),
    ({"unique_for": 60, "unique_until": "finish"}, "'start' or 'success', not 'finish'"),
])
def test_invalid_options_name_the_job_and_value(options, message):
    with pytest.raises(TypeError, match="^app.Job: option .*" + message.replace("(", r"\(")):
        unique.validate_options(options, "app.Job")


@pytest.mark.parametrize("unique_for, now, run_at, expected", [
    (60, 1000.0, None, 60),
    (60, 1000.0, 1300.0, 360),
    (60, 1000.0, 900.0, 60),
])
def test_a_scheduled_job_holds_its_lock_until_run_time_plus_unique_for(unique_for, now, run_at,
                                                                       expected):
    assert unique.lock_ttl(unique_for, now, run_at) == expected


@pytest.mark.parametrize("until, event, released", [
    ("start", "start", True),
    ("start", "success", False),
    ("start", "dead", False),
    ("success", "start", False),
    ("success", "retry", False),
    ("success", "success", True),
    ("success", "dead", True),
    ("start", "expired", True),
    ("success", "expired", True),
    (None, "success", False),
])
def test_release_points(until, event, released):
    payload = {"jid": "j", **unique.payload_fields("d", until)} if until else {"jid": "j"}
    assert unique.releases_at(payload, event) is released


def test_release_only_frees_the_holders_lock(redis):
    assert take(redis, "d", "jid1", 60)
    assert not take(redis, "d", "jid2", 60)
    assert not unique.release(redis, KEYS, "d", "default", "jid2")
    assert unique.holder(redis, KEYS, "d", "default") == "jid1"
    assert unique.release(redis, KEYS, "d", "default", "jid1")
    assert take(redis, "d", "jid2", 60)


def test_a_lock_expires_by_itself(redis):
    assert take(redis, "d", "jid1", 0.1)
    assert 0 < redis.pttl(KEYS.unique("d", "default")) <= 100
    wait_for(lambda: take(redis, "d", "jid2", 60), timeout=3,
             message="the lock to expire")
    assert not unique.release(redis, KEYS, "d", "default", "jid1")
    assert unique.holder(redis, KEYS, "d", "default") == "jid2"


class Racing(forkq.Job):
    options = {"unique_for": 60}


def test_two_hundred_threads_pushing_one_unique_job_push_it_once(redis):
    start = threading.Barrier(200)
    jids: list = []

    def race():
        start.wait()
        jids.append(Racing.perform_async(1))

    threads = [threading.Thread(target=race) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    pushed = [jid for jid in jids if jid is not None]
    assert len(jids) == 200 and len(pushed) == 1 and redis.llen("queue:default") == 1
    lock_digest = unique.digest(Racing.wire_name(), "default", [1])
    assert unique.holder(redis, KEYS, lock_digest, "default") == pushed[0]
