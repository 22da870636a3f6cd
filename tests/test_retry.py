"""Retry decisions (pure) and the writes to the retry and dead sets (real Redis)."""

import json

import pytest

from forkq import dead, retry
from forkq.keys import Keys


@pytest.mark.parametrize("count, rand, expected", [
    (0, 0, 15), (0, 9, 24), (1, 0, 16), (2, 5, 36), (10, 0, 10_015), (24, 0, 331_791),
])
def test_backoff_formula(count, rand, expected):
    assert retry.backoff_delay(count, rand_int=lambda n: rand) == expected


def test_backoff_random_part_is_bounded():
    seen = {retry.backoff_delay(3, rand_int=lambda n: n - 1) for _ in range(3)}
    assert seen == {81 + 15 + 39}


def boom():
    return ValueError("boom")


@pytest.mark.parametrize("payload, hooks, action", [
    ({"retry": True}, {}, "retry"),
    ({"retry": True, "retry_count": 24}, {}, "dead"),
    ({"retry": 2, "retry_count": 0}, {}, "retry"),
    ({"retry": 2, "retry_count": 1}, {}, "dead"),
    ({"retry": 0}, {}, "dead"),
    ({"retry": False}, {}, "drop"),
    ({"retry": True}, {"retry_on": (KeyError,)}, "dead"),
    ({"retry": True}, {"retry_on": (ValueError,)}, "retry"),
    ({"retry": True}, {"retry_in": lambda c, e: "kill"}, "dead"),
    ({"retry": True}, {"retry_in": lambda c, e: "discard"}, "discard"),
])
def test_decisions(payload, hooks, action):
    assert retry.decide(payload, boom(), hooks, max_retries=25).action == action


def test_retry_in_hook_sets_the_delay_and_sees_the_count():
    seen = []
    decision = retry.decide({"retry_count": 3}, boom(), {"retry_in": lambda c, e: seen.append(c) or 7}, 25)
    assert decision.delay == 7 and seen == [4]


def test_error_fields_first_and_later_failures():
    first = retry.with_error({"class": "J", "args": [], "queue": "q", "x-unknown": 1}, KeyError("k"), 100.0)
    assert first["retry_count"] == 0 and first["failed_at"] == 100.0
    assert first["error_class"] == "KeyError" and first["error_message"] == "'k'"
    assert first["x-unknown"] == 1 and "retried_at" not in first
    second = retry.with_error(first, ValueError("x"), 200.0)
    assert second["retry_count"] == 1 and second["retried_at"] == 200.0 and second["failed_at"] == 100.0


def test_error_class_is_qualified_outside_builtins():
    from forkq.errors import UnknownJobError
    assert retry.error_class_name(UnknownJobError()) == "forkq.errors.UnknownJobError"


def test_retry_queue_and_backtrace_lines():
    try:
        raise RuntimeError("deep")
    except RuntimeError as exc:
        failed = retry.with_error({"retry_queue": "slow", "queue": "q", "backtrace": 2}, exc, 1.0)
    assert failed["queue"] == "slow"
    assert "\n" not in failed["error_backtrace"]
    lines = retry.decode_backtrace(failed["error_backtrace"])
    assert len(lines) == 2 and "RuntimeError: deep" in lines[-1]


def test_writer_schedules_retry_then_dies_and_calls_handlers(redis):
    keys = Keys()
    died = []
    writer = retry.RetryWriter(keys, dead.DeadSet(keys, 10, 1e9), 25, [lambda p, e: died.append(p["jid"])])
    exhausted = []
    hooks = {"retries_exhausted": lambda p, e: exhausted.append(p["jid"])}
    payload = {"class": "J", "args": [1], "jid": "a" * 24, "queue": "q", "retry": 1}
    assert writer.handle(redis, payload, boom(), hooks).decision.action == "retry"
    (text, score), = redis.zrange(keys.retry, 0, -1, withscores=True)
    assert json.loads(text)["retry_count"] == 0
    redis.delete(keys.retry)
    assert writer.handle(redis, json.loads(text), boom(), hooks).decision.action == "dead"
    assert died == exhausted == ["a" * 24]
    assert json.loads(redis.zrange(keys.dead, 0, -1)[0])["retry_count"] == 1


def test_retry_false_drops_after_handlers_and_dead_false_skips_the_set(redis):
    keys = Keys()
    died = []
    writer = retry.RetryWriter(keys, dead.DeadSet(keys, 10, 1e9), 25, [lambda p, e: died.append(1)])
    writer.handle(redis, {"jid": "x", "retry": False}, boom(), {})
    writer.handle(redis, {"jid": "y", "retry": 0, "dead": False}, boom(), {})
    assert died == [1, 1]
    assert redis.zcard(keys.dead) == 0 and redis.zcard(keys.retry) == 0
