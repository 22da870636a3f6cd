"""Job results on a real Redis: the record's life from enqueue to finish, TTL, bad values."""

import asyncio

import pytest

from forkq import client, connection, push, results
from forkq.keys import Keys


def payload(**extra):
    base = {"class": "jobs.Record", "args": [], "queue": "default", "jid": "a" * 24,
            "result_ttl": 60}
    return {**base, **extra}


@pytest.fixture
def recorder(redis):
    return results.ResultRecorder(Keys())


def test_a_result_goes_from_queued_to_running_to_succeeded(redis, recorder):
    job = payload()
    connection.send_commands(client.default().redis, push.commands(Keys(), [job], None, 100.0))
    queued = results.get(job["jid"])
    assert queued.status == "queued" and queued.enqueued_at == 100.0 and queued.attempts == 0
    assert queued.class_name == "jobs.Record" and queued.args == []
    recorder.started(redis, job, "host:1:ab")
    running = results.get(job["jid"])
    assert running.status == "running" and running.attempts == 1
    assert running.worker_id == "host:1:ab" and running.started_at >= 100.0
    recorder.succeeded(redis, job, {"total": [1, 2]})
    done = results.get(job["jid"])
    assert done.status == "succeeded" and done.value == {"total": [1, 2]} and done.finished
    assert done.error is None and done.finished_at >= done.started_at
    assert 0 < redis.ttl(f"forkq:result:{job['jid']}") <= 60


def test_a_retried_failure_keeps_every_error_and_counts_attempts(redis, recorder):
    job = payload(result_ttl=30.5)
    recorder.started(redis, job, "w1")
    recorder.failed(redis, job, ValueError("first"), will_retry=True)
    between = results.get(job["jid"])
    assert between.status == "queued" and between.error["class"] == "ValueError"
    retried = {**job, "retry_count": 0}
    recorder.started(redis, retried, "w2")
    recorder.failed(redis, retried, KeyError("second"), will_retry=False)
    final = results.get(job["jid"])
    assert final.status == "failed" and final.attempts == 2 and final.worker_ids == ["w1", "w2"]
    assert [e["message"] for e in final.errors] == ["first", "'second'"]
    assert "KeyError: 'second'" in final.error["traceback"]
    assert redis.ttl(f"forkq:result:{job['jid']}") == 31


def test_a_value_json_cannot_store_is_an_error_on_the_result(redis, recorder):
    job = payload()
    recorder.started(redis, job, "w1")
    recorder.succeeded(redis, job, {1, 2})
    result = results.get(job["jid"])
    assert result.status == "failed" and result.value is None
    assert result.error["class"] == "TypeError"
    assert "jobs.Record returned a builtins.set" in result.error["message"]


def test_payloads_without_result_ttl_keep_nothing(redis, recorder):
    job = payload(result_ttl=None)
    assert push.commands(Keys(), [job], None, 1.0)[0][0] == "SADD"
    recorder.started(redis, job, "w1")
    recorder.succeeded(redis, job, 1)
    assert results.get(job["jid"]) is None and redis.keys("forkq:result:*") == []


def test_an_unknown_jid_reads_none_sync_and_async(redis, recorder):
    recorder.started(redis, payload(), "w1")
    assert results.get("b" * 24) is None

    async def read():
        from forkq import aio
        try:
            return await results.aget("b" * 24), await results.aget("a" * 24)
        finally:
            await aio.aclose()

    missing, found = asyncio.run(read())
    assert missing is None and found.status == "running"


def test_the_namespace_prefixes_the_result_key(redis):
    recorder = results.ResultRecorder(Keys("app"))
    recorder.started(redis, payload(), "w1")
    assert redis.exists("app:forkq:result:" + "a" * 24)


@pytest.mark.parametrize("value", [0, -1, True, "60", float("inf"), float("nan")])
def test_check_ttl_refuses_what_is_not_a_positive_number(value):
    with pytest.raises(TypeError, match="'result_ttl' must be a positive number"):
        results.check_ttl(value, "Job.set()")
    assert results.ttl_of(payload(result_ttl=value)) is None
