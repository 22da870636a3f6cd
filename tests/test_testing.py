"""forkq.testing: inline and fake modes run without Redis, through a JSON round trip."""

import pytest

import forkq
from forkq import testing

calls = []


@forkq.job
def remember(value):
    calls.append(value)


@forkq.job
def fan_out(count):
    for index in range(count):
        remember.perform_async(index)


@pytest.fixture(autouse=True)
def clear_calls():
    calls.clear()
    forkq.configure(redis_url="redis://127.0.0.1:1/0")


def test_inline_runs_at_enqueue_with_json_data():
    with testing.inline():
        jid = remember.perform_async({"a": [1, 2]})
        remember.perform_in(3600, "scheduled runs at once")
    assert calls == [{"a": [1, 2]}, "scheduled runs at once"] and len(jid) == 24


def test_fake_collects_and_drain_runs_what_jobs_enqueue():
    with testing.fake() as queue:
        fan_out.perform_async(3)
        remember.perform_in(60, "later")
        assert [j["args"] for j in queue.jobs_for(fan_out)] == [[3]]
        assert queue.jobs_for(remember)[0]["at"] > 0
        assert queue.drain() == 5
    assert sorted(map(str, calls)) == ["0", "1", "2", "later"]


def test_argument_rules_apply_in_test_modes_too():
    import datetime
    with testing.fake(), pytest.raises(TypeError, match="datetime"):
        remember.perform_async(datetime.datetime.now())


def test_modes_restore_the_real_client():
    with testing.fake():
        pass
    with pytest.raises(Exception, match="(?i)connect"):
        remember.perform_async(1)


def test_coroutine_jobs_run_to_their_end_inline_and_when_drained():
    import asyncio

    ran = []

    @forkq.job
    async def note(value):
        await asyncio.sleep(0)
        ran.append(value)

    with testing.inline():
        note.perform_async(2)

        async def from_a_loop():
            return await note.aperform_async(3)

        assert asyncio.run(from_a_loop())
    with testing.fake() as queue:
        note.perform_async(4)
        queue.drain()
    assert ran == [2, 3, 4]
