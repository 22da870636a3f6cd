"""Retry decisions (pure) and the writes to the retry and dead sets (real Redis)."""

import json

import pytest

from forkq import dead, payload, values
from forkq.api.entry import decode_backtrace
from forkq.worker import retry
from forkq.keys import Keys
from helpers import wait_for


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
    assert payload.error_class_name(UnknownJobError()) == "forkq.errors.UnknownJobError"


def test_retry_queue_and_backtrace_lines():
    try:
        raise RuntimeError("deep")
    except RuntimeError as exc:
        failed = retry.with_error({"retry_queue": "slow", "queue": "q", "backtrace": 2}, exc, 1.0)
    assert failed["queue"] == "slow"
    assert "\n" not in failed["error_backtrace"]
    lines = decode_backtrace(failed["error_backtrace"])
    assert len(lines) == 2 and "RuntimeError: deep" in lines[-1]


def test_writer_schedules_retry_then_dies_and_calls_handlers(redis):
    keys = Keys()
    died = []
    writer = retry.RetryWriter(keys, dead.DeadWriter(keys, 10, 1e9), 25, [lambda p, e: died.append(p["jid"])])
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
    writer = retry.RetryWriter(keys, dead.DeadWriter(keys, 10, 1e9), 25, [lambda p, e: died.append(1)])
    writer.handle(redis, {"jid": "x", "retry": False}, boom(), {})
    writer.handle(redis, {"jid": "y", "retry": 0, "dead": False}, boom(), {})
    assert died == [1, 1]
    assert redis.zcard(keys.dead) == 0 and redis.zcard(keys.retry) == 0


@pytest.mark.parametrize("value, limit, noted", [
    (True, 25, False), (False, None, False), (None, None, False), (3, 3, False), (0, 0, False),
    (-1, 0, False), ("yes", 25, True), (float("inf"), 25, True), (2.0, 25, True),
    ([1], 25, True),
])
def test_retry_values_are_read_like_sidekiq(value, limit, noted):
    got, note = retry.retry_limit(value, 25)
    assert got == limit and bool(note) == noted


@pytest.mark.parametrize("payload, summary", [
    ({"retry": True, "retry_count": 2}, "retry 4/25 in 96 s"),
    ({"retry": True, "retry_count": 24}, "dead after 25 retries"),
    ({"retry": 0}, "dead: retry is 0"),
    ({"retry": -1}, "dead: retry is 0"),
    ({"retry": False}, "dropped (retry: false)"),
    ({"retry": "yes"}, "retry 1/25 in 15 s; retry 'yes' is not true, false or a count: 25 used"),
    ({"retry_count": "abc"}, "retry 1/25 in 15 s; retry_count 'abc' is not a count: counted "
                             "from 0"),
    ({"retry_count": 10**400}, "dead after 25 retries"),
])
def test_decisions_say_what_happens_next(payload, summary):
    decision = retry.decide(payload, boom(), {}, 25, rand_int=lambda n: 0)
    assert "; ".join((decision.summary,) + decision.notes) == summary


@pytest.mark.parametrize("answer, delay, noted", [
    (7, 7.0, False), (float("nan"), 15.0, True), (-3, 15.0, True), ("soon", 15.0, True),
    (float("inf"), 15.0, True),
])
def test_unusable_retry_in_answers_get_the_default_backoff(answer, delay, noted):
    decision = retry.decide({}, boom(), {"retry_in": lambda c, e: answer}, 25,
                            rand_int=lambda n: 0)
    assert decision.delay == delay and bool(decision.notes) == noted


def test_a_retry_in_hook_that_raises_gets_the_default_backoff():
    def hook(count, exc):
        raise RuntimeError("hook bug")
    decision = retry.decide({}, boom(), {"retry_in": hook}, 25, rand_int=lambda n: 0)
    assert decision.action == "retry" and decision.delay == 15.0
    assert decision.notes == ("retry_in raised RuntimeError: default backoff used",)


def test_bad_failure_fields_are_read_leniently():
    class Unprintable(Exception):
        def __str__(self):
            raise ValueError("no")
    failed = retry.with_error({"retry_count": "abc", "backtrace": "lots", "retry_queue": 5,
                               "queue": "q"}, Unprintable(), 1.0)
    assert failed["retry_count"] == 0 and failed["failed_at"] == 1.0
    assert "error_backtrace" not in failed and failed["queue"] == "q"
    assert failed["error_message"] == "(str() of the exception raised ValueError)"


def test_dead_false_is_told_as_dropped(redis):
    keys = Keys()
    writer = retry.RetryWriter(keys, dead.DeadWriter(keys, 10, 1e9), 25, [])
    outcome = writer.handle(redis, {"jid": "z", "retry": 0, "dead": False}, boom(), {})
    assert outcome.summary == "dropped (dead: false): retry is 0"


@pytest.mark.parametrize("settings, kept", [({}, 10), ({"default_backtrace": 2}, 2),
                                            ({"default_backtrace": 0}, 0)])
def test_a_failed_job_keeps_the_last_lines_of_its_traceback_by_default(
        redis, start_worker, settings, kept):
    import jobs
    from forkq.api import Api

    start_worker(**settings)
    jobs.explode.perform_async(1)
    wait_for(lambda: redis.zcard("retry") == 1, 10, message="the job in retry")
    [entry] = Api(redis).retries.page()
    # explode's whole traceback is a few entries more than 2 and fewer than 10
    if kept <= 2:
        assert len(entry.backtrace) == kept
    else:
        assert 2 < len(entry.backtrace) <= kept
    if kept:
        assert entry.backtrace[-1] == "ValueError: exploded 1"


@pytest.mark.parametrize("bad", ["slow\nq", "slow,2", "", " ", "q" * 201, 5, ["slow"]])
def test_a_retry_queue_no_worker_could_read_is_ignored_and_said(bad):
    """A name with a newline or a comma could not be listed in any worker's queues: the job
    would be stranded there. It is retried in its own queue, and the failure's line says so."""
    job = {"jid": "j" * 24, "queue": "q", "retry_queue": bad}
    assert retry.with_error(job, boom(), 1.0)["queue"] == "q"
    decision = retry.decide(job, boom(), {}, 25, rand_int=lambda n: 0)
    assert decision.action == "retry"
    assert decision.notes == (f"retry_queue {retry.shown(bad)} is not a queue name "
                              f"({values.name_problem(bad) if isinstance(bad, str) else 'not a string'}"
                              f"): ignored",)
