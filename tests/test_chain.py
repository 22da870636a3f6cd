"""Chains and chords (``flow/chain.py``): values passed along, immutable steps, a step that
dies stopping the chain, a chord's callback getting its header's values in order."""

from __future__ import annotations

import json

import pytest

import forkq
from batch_jobs import Add, Boom, Callback, Flaky, Listed, Mul, Record
from helpers import wait_for


def final(jid: str, timeout: float = 15):
    return wait_for(lambda: (r := forkq.result(jid)) and r.finished and r, timeout,
                    message=f"the result of {jid}")


def test_a_chain_pushes_only_its_first_step_and_returns_the_last_steps_jid(redis):
    jid = forkq.chain(Add.s(1, 2), Mul.s(10), Add.si(5, 5)).perform_async()
    (first,) = [json.loads(t) for t in redis.lrange("queue:default", 0, -1)]
    assert first["args"] == [1, 2] and [step["pass"] for step in first["chain"]] == [True, False]
    assert first["chain"][-1]["job"]["jid"] == jid
    assert forkq.result(jid).status == "queued"  # kept although no step set result_ttl


def test_signatures_are_checked_when_the_chain_is_pushed(redis):
    with pytest.raises(TypeError, match="Mul.s"):
        forkq.chain(Add.s(1), Mul.s(1, 2)).perform_async()  # Mul gets the value: 3 args
    with pytest.raises(TypeError, match="item 1 is a int"):
        forkq.chain(Add.s(1), 5)
    with pytest.raises(TypeError, match="on_success is the chord's own"):
        forkq.chord([Add.s(1)], Add.s(), on_success=Add)
    assert redis.llen("queue:default") == 0


def test_a_chain_passes_each_value_to_the_next_step(redis, start_worker):
    jid = forkq.chain(Add.s(1, 2), Mul.s(10), Add.s(0.5)).perform_async()
    start_worker()
    result = final(jid)
    assert result.status == "succeeded" and result.value == 30.5


def test_an_immutable_step_ignores_the_previous_value(redis, start_worker):
    jid = forkq.chain(Add.s(1, 2), Add.si(40, 2)).perform_async()
    start_worker()
    assert final(jid).value == 42


def test_a_step_retried_then_succeeding_goes_on_once(redis, start_worker):
    jid = forkq.chain(Flaky.s("chain"), Add.si(1, 1), Record.s()).perform_async()
    start_worker()
    assert final(jid).status == "succeeded"
    assert redis.llen("batch:ran") == 2  # Flaky once (its failed run records nothing), Record once


def test_a_step_that_dies_stops_the_chain_and_fails_its_result(redis, start_worker):
    jid = forkq.chain(Add.s(1, 2), Boom.s(), Record.s()).perform_async()
    start_worker()
    result = final(jid)
    assert result.status == "failed" and "boom (3,)" in result.error["message"]
    assert redis.llen("batch:ran") == 0 and redis.zcard("dead") == 1


def test_a_chord_calls_back_with_its_headers_values_in_order(redis, start_worker):
    jid = forkq.chord([Mul.s(i, i) for i in range(6)], Listed.s("x")).perform_async()
    start_worker()
    result = final(jid)
    assert result.value == {"values": [0, 1, 4, 9, 16, 25], "extra": ["x"]}


def test_an_immutable_chord_callback_gets_only_its_own_args(redis, start_worker):
    jid = forkq.chord([Mul.s(2, 3)], Add.si(1, 2)).perform_async()
    start_worker()
    assert final(jid).value == 3


def test_a_chord_whose_header_job_dies_never_calls_back(redis, start_worker):
    jid = forkq.chord([Mul.s(2, 3), Boom.s(1)], Listed.s()).perform_async()
    start_worker()
    result = final(jid)
    assert result.status == "failed" and "boom (1,)" in result.error["message"]
    wait_for(lambda: redis.llen("queue:default") == 0 and not redis.keys("forkq:inflight*"), 5)
    assert forkq.result(jid).status == "failed"  # the callback would have overwritten it


def test_a_chain_started_in_a_batch_keeps_the_batch_open_until_its_last_step(redis,
                                                                          start_worker):
    with forkq.batch(on_success=Callback) as b:
        jid = forkq.chain(Add.s(1, 1), Mul.s(3)).perform_async()
    start_worker()
    assert final(jid).value == 6
    wait_for(lambda: redis.llen("batch:callbacks") == 1, 5)
    status = forkq.batch_status(b.bid)
    assert status.success and status.total == 2


def test_an_empty_chord_calls_back_at_once_with_no_values(redis, start_worker):
    jid = forkq.chord([], Listed.s("y")).perform_async()
    start_worker()
    assert final(jid).value == {"values": [], "extra": ["y"]}
