"""Outage logging: one line when Redis goes, one when it returns, stale sockets ignored."""

import logging

import pytest

from forkq.connection import health


@pytest.fixture
def clocked(monkeypatch):
    """A ``RedisHealth`` on a clock the test moves (``clock[0]``, seconds)."""
    clock = [100.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: clock[0])
    return health.RedisHealth(), clock


def messages(caplog):
    return [r.getMessage().split(" (")[0].split(" after")[0] for r in caplog.records]


def test_an_outage_is_logged_once_and_its_end_once(caplog, clocked):
    state, clock = clocked
    with caplog.at_level(logging.INFO, logger="forkq"):
        for _ in range(5):
            state.failed(ConnectionError("refused"))
            clock[0] += health.OUTAGE_GRACE / 2
        state.succeeded()
        state.succeeded()
    assert messages(caplog) == ["Redis unavailable", "Redis is back"]


def test_a_failure_with_a_success_right_after_it_is_not_an_outage(caplog, clocked):
    """When a primary dies, one thread's failure may be followed by another thread's success
    (its reply was already on the way): that is not an outage of its own."""
    state, clock = clocked
    with caplog.at_level(logging.INFO, logger="forkq"):
        state.failed(ConnectionError("closed by server"))
        clock[0] += 0.002
        state.succeeded()
        for _ in range(4):
            clock[0] += 0.2
            state.failed(ConnectionError("no primary"))
        state.succeeded()
    assert messages(caplog) == ["Redis unavailable", "Redis is back"]


def test_a_stale_connection_failing_right_after_recovery_is_not_an_outage(caplog):
    state = health.RedisHealth()
    state.failed(ConnectionError("refused"))
    state.succeeded()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="forkq"):
        state.failed(BrokenPipeError("stale"))
        state.succeeded()
    assert messages(caplog) == []


def test_failures_lasting_past_the_grace_are_logged(caplog, clocked):
    state, clock = clocked
    state.failed(ConnectionError("refused"))
    state.succeeded()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="forkq"):
        state.failed(ConnectionError("again"))
        clock[0] += health.STALE_GRACE + 0.1
        state.failed(ConnectionError("again"))
    assert messages(caplog) == ["Redis unavailable"]


def test_backoff_doubles_up_to_the_cap():
    delays = [0.0]
    for _ in range(8):
        delays.append(health.next_backoff(delays[-1]))
    assert delays[1:4] == [0.1, 0.2, 0.4] and delays[-1] == health.BACKOFF_CAP


def test_an_error_reply_is_not_called_an_outage(caplog, clocked):
    import redis
    state, clock = clocked
    with caplog.at_level(logging.INFO, logger="forkq"):
        for _ in range(3):
            state.failed(redis.ResponseError("OOM command not allowed"))
            clock[0] += health.OUTAGE_GRACE / 2
    assert messages(caplog) == ["Redis refused a command"]


def _reply(redis, *command):
    """The error a real Redis answers to ``command``."""
    import redis as redis_py
    try:
        redis.execute_command(*command)
    except redis_py.ResponseError as exc:
        return exc
    raise AssertionError(f"{command} was accepted")


def test_a_command_refused_for_its_data_is_told_from_a_passing_refusal(redis):
    import redis as redis_py
    redis.lpush("retry", "x")
    refused = [
        _reply(redis, "ZADD", "retry", 1, "job"),
        _reply(redis, "SET", "k", "v", "PX", 10 ** 30),
        _reply(redis, "SET", "k", "v", "EX", 2 ** 62),
        _reply(redis, "EVAL", "return redis.call('ZADD', KEYS[1], 1, 'job')", 1, "retry"),
        _reply(redis, "EVAL", "return redis.call('SET', KEYS[1], 'v', 'PX', ARGV[1])", 1, "k",
               "1e300"),
    ]
    assert [health.refused_for_data(exc) for exc in refused] == [True] * len(refused)
    redis.config_set("maxmemory", 1)
    try:
        full = [_reply(redis, "SET", "k", "v"),
                _reply(redis, "EVAL", "return redis.call('SET', KEYS[1], 'v')", 1, "k")]
    finally:
        redis.config_set("maxmemory", 0)
    passing = full + [
        redis_py.ReadOnlyError("You can't write against a read only replica."),
        redis_py.ResponseError("BUSY Redis is busy running a script."),
        redis_py.ResponseError("UNBLOCKED force unblock from blocking operation"),
        redis_py.ResponseError("Error running script: @user_script:1: -MASTERDOWN Link down"),
        redis_py.ConnectionError("refused"), redis_py.TimeoutError("timed out")]
    assert [health.refused_for_data(exc) for exc in passing] == [False] * len(passing)


def test_retrying_raises_a_command_refused_for_its_data_at_once(redis):
    import redis as redis_py
    redis.lpush("retry", "x")
    waits = []
    with pytest.raises(redis_py.ResponseError, match="WRONGTYPE"):
        health.retrying(lambda: redis.zadd("retry", {"job": 1}), health.RedisHealth(),
                        lambda delay: waits.append(delay))
    assert waits == []


def test_a_refusal_sent_before_the_last_acceptance_is_stale(caplog, clocked):
    """Threads fetch at once: a fetch sent while the key was still wrong may be answered after
    another thread's fetch was accepted. That old refusal is not the key going wrong again,
    and neither is an old acceptance the key being fixed."""
    state, clock = clocked
    refusal = ValueError("WRONGTYPE")
    with caplog.at_level(logging.INFO, logger="forkq"):
        state.refused("fetch", refusal, started=clock[0])
        old_call = clock[0] + 1
        clock[0] += 2
        state.accepted("fetch", started=clock[0])
        clock[0] += 1
        state.refused("fetch", refusal, started=old_call)
        state.refused("fetch", refusal, started=clock[0])
        state.accepted("fetch", started=old_call)
        clock[0] += 1
        state.accepted("fetch", started=clock[0])
    assert messages(caplog) == ["Redis refuses the fetch", "Redis accepts the fetch again",
                                "Redis refuses the fetch", "Redis accepts the fetch again"]
    assert state.refusing == set()
