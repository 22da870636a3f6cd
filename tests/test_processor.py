"""The job lifecycle in a running worker (in-process threads) against a real Redis."""

import json
import time

import pytest

import jobs
from forkq import client
from helpers import wait_for


def ran(redis):
    return redis.lrange("ran", 0, -1)


def test_jobs_run_and_stats_are_counted(redis, start_worker):
    start_worker()
    jobs.Record.perform_bulk([[i] for i in range(200)])
    wait_for(lambda: len(ran(redis)) == 200)
    assert sorted(map(int, ran(redis))) == list(range(200))
    wait_for(lambda: redis.get("stat:processed") == "200", message="processed stat flushed")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert redis.get(f"stat:processed:{day}") == "200"
    assert redis.get("stat:failed") is None
    assert 0 < redis.ttl(f"stat:processed:{day}") <= 5 * 365 * 86400


def test_qualified_name_still_accepted_for_named_jobs(redis, start_worker):
    start_worker()
    for name in ("HardJob", "jobs.Shared"):
        redis.lpush("queue:default", json.dumps({"class": name, "args": [1, name], "jid": "b" * 24,
                                                 "queue": "default", "retry": True}))
    wait_for(lambda: sorted(ran(redis)) == ["1:HardJob", "1:jobs.Shared"])


def test_failure_goes_to_retry_with_error_fields(redis, start_worker):
    start_worker()
    jid = jobs.explode.perform_async(7)
    wait_for(lambda: redis.zcard("retry") == 1)
    (text, score), = redis.zrange("retry", 0, -1, withscores=True)
    job = json.loads(text)
    assert job["jid"] == jid and job["retry_count"] == 0
    assert job["error_class"] == "ValueError" and job["error_message"] == "exploded 7"
    assert job["failed_at"] > 0 and time.time() + 14 < score < time.time() + 26
    wait_for(lambda: redis.get("stat:failed") == "1")


def test_retries_then_dead_after_the_retry_count(redis, start_worker):
    start_worker()
    jobs.explode.perform_async(1)
    for tries in (1, 2):
        wait_for(lambda: redis.llen("tries") == tries and redis.zcard("retry") == 1,
                 message=f"failure {tries} scheduled for retry")
        (text,) = redis.zrange("retry", 0, -1)
        redis.zadd("retry", {text: 0})
    wait_for(lambda: redis.zcard("dead") == 1)
    dead = json.loads(redis.zrange("dead", 0, -1)[0])
    assert dead["retry_count"] == 2 and dead["retried_at"] >= dead["failed_at"]
    assert redis.lrange("tries", 0, -1) == ["1", "1", "1"] and redis.zcard("retry") == 0


def test_retry_false_is_dropped_after_death_handlers(redis, start_worker):
    import forkq
    died = []
    forkq.death_handlers.append(lambda payload, exc: died.append(payload["jid"]))
    try:
        start_worker()
        jid = jobs.explode_once.perform_async(1)
        wait_for(lambda: died == [jid])
    finally:
        forkq.death_handlers.clear()
    assert redis.zcard("dead") == 0 and redis.zcard("retry") == 0


def test_unknown_class_is_an_ordinary_retried_error(redis, start_worker):
    start_worker()
    redis.lpush("queue:default", json.dumps({"class": "Missing::Job", "args": [], "jid": "c" * 24,
                                             "queue": "default", "retry": 1}))
    wait_for(lambda: redis.zcard("retry") == 1)
    job = json.loads(redis.zrange("retry", 0, -1)[0])
    assert job["error_class"] == "forkq.errors.UnknownJobError"
    assert "Missing::Job" in job["error_message"] and "require" in job["error_message"]


@pytest.mark.parametrize("raw, error", [
    ("{not json", "payload is not valid JSON"),
    ('{"args": [1]}', "payload has no 'class'"),
    ('{"class": "jobs.Record", "args": {"a": 1}}', "'args' is dict, not a list"),
    ('[1, 2]', "payload is a JSON list, not an object"),
])
def test_malformed_payloads_go_to_dead_with_raw_text(redis, start_worker, raw, error):
    start_worker()
    redis.lpush("queue:default", raw)
    jobs.Record.perform_async("after")
    wait_for(lambda: redis.zcard("dead") == 1 and ran(redis) == ["after"])
    dead = json.loads(redis.zrange("dead", 0, -1)[0])
    assert dead["raw"] == raw and error in dead["error_message"]
    assert dead["error_class"] == "forkq.errors.MalformedJobError"


def test_server_middleware_wraps_perform(redis, start_worker):
    seen = []

    def around(job, payload, queue, call_next):
        seen.append((type(job).__name__, payload["jid"], queue))
        return call_next()

    client.default().middleware.add_server(around)
    try:
        start_worker()
        jid = jobs.Record.perform_async("m")
        wait_for(lambda: ran(redis) == ["m"])
    finally:
        client.default().middleware.server.remove(around)
    assert seen == [("Record", jid, "default")]


def test_strict_queues_drain_in_order(redis, start_worker):
    jobs.Record.set(queue="low").perform_bulk([["low"]] * 20)
    jobs.Record.set(queue="high").perform_bulk([["high"]] * 20)
    start_worker(queues=["high", "low"], concurrency=1)
    wait_for(lambda: len(ran(redis)) == 40)
    assert ran(redis) == ["high"] * 20 + ["low"] * 20


def test_scheduled_job_runs_when_due(redis, start_worker):
    start_worker()
    jobs.Record.perform_in(0.5, "later")
    jobs.Record.perform_in(3600, "much later")
    wait_for(lambda: ran(redis) == ["later"], timeout=5)
    assert redis.zcard("schedule") == 1


def test_tstp_quiets_and_running_jobs_finish(redis, start_worker):
    jobs.gate.clear()
    worker = start_worker(concurrency=2)
    jobs.wait_for_gate.perform_async("held")
    wait_for(lambda: redis.lrange("started", 0, -1) == ["held"])
    redis.lpush(f"{worker.context.identity}-signals", "TSTP")
    wait_for(lambda: redis.hget(worker.context.identity, "quiet") == "true")
    jobs.Record.perform_async("not run")
    jobs.gate.set()
    wait_for(lambda: ran(redis) == ["held"])
    assert redis.llen("queue:default") == 1


def test_stop_requeues_jobs_running_past_the_timeout(redis, start_worker):
    import signal
    jobs.gate.clear()
    worker = start_worker(concurrency=2, timeout=0.5)
    jid = jobs.wait_for_gate.perform_async("long")
    jobs.Record.perform_async("queued behind")
    wait_for(lambda: redis.lrange("started", 0, -1) == ["long"])
    wait_for(lambda: ran(redis) == ["queued behind"])
    started = time.monotonic()
    worker.signals.push(signal.SIGTERM)
    wait_for(lambda: redis.llen("queue:default") == 1, timeout=5)
    assert time.monotonic() - started < 3
    assert json.loads(redis.lindex("queue:default", -1))["jid"] == jid
    assert not [k for k in redis.keys("forkq:inflight:*")]
    jobs.gate.set()
