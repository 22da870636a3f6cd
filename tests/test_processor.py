"""The job lifecycle in a running worker (in-process threads) against a real Redis."""

import base64
import json
import time

import pytest

import forkq

import jobs
from forkq import client
from helpers import LogLines, wait_for


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
        seen.append(call_next())  # what perform returned
        return seen[-1]

    client.default().middleware.add_server(around)
    try:
        start_worker()
        jid = jobs.Record.perform_async("m")
        # the job records its run inside perform, before the middleware sees its return
        wait_for(lambda: len(seen) == 2, message="the middleware around the whole run")
    finally:
        client.default().middleware.server.remove(around)
    assert ran(redis) == ["m"]
    assert seen == [("Record", jid, "default"), "recorded m"]


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
    redis.lpush(f"{worker.services.identity}-signals", "TSTP")
    wait_for(lambda: redis.hget(worker.services.identity, "quiet") == "true")
    jobs.Record.perform_async("not run")
    jobs.gate.set()
    wait_for(lambda: ran(redis) == ["held"])
    # a thread already blocked in BLMOVE when the quiet came may take the job, but never runs
    # it: it goes back to its queue as the thread stops
    wait_for(lambda: redis.llen("queue:default") == 1, message="the job back in its queue")
    assert ran(redis) == ["held"]


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


def record_text(value, **fields):
    job = {"class": "jobs.Record", "args": [value], "jid": f"{value}".ljust(24, "0")[:24],
           "queue": "default", "retry": True, **fields}
    return json.dumps(job)


def missing_text(**fields):
    """A job of a class no worker knows: it fails, so its retry fields are read."""
    return json.dumps({"class": "Missing", "args": [], "jid": "f" * 24, "queue": "default",
                       **fields}, allow_nan=True)


#: payloads a buggy producer might push, and what must become of each
BAD_PAYLOADS = [
    (b'{"class":"jobs.Record","args":["\xff\xfe"],"queue":"default"}', "dead", "not UTF-8"),
    ('{"class":"jobs.Record","args":' + "[" * 100_000 + "]" * 100_000 + "}", "dead",
     "deeper than the JSON reader allows"),
    ('{"class":"jobs.Record","args":{}}', "dead", "'args' is dict"),
    ('{"class":5,"args":[]}', "dead", "'class' is int"),
    ('{"class":"jobs.Record","args":[1],"jid":{}}', "dead", "'jid' is dict"),
    ('{"class":"jobs.Record","args":[1],"queue":[]}', "dead", "'queue' is list"),
    ('{"class":"jobs.Record","args":[1', "dead", "not valid JSON"),
    ("null", "dead", "JSON null"),
    ('{"class":"jobs.Record","args":[' + "7" * 5000 + "]}", "dead", "not valid JSON"),
    (missing_text(retry_count="abc"), "retry", "retry_count 'abc' is not a count"),
    (missing_text(retry="yes"), "retry", "retry 'yes' is not true, false or a count: 25 used"),
    (missing_text(retry=float("inf")), "retry", "retry inf is not true"),
    (missing_text(backtrace="lots"), "retry", "retry 1/25 in"),
    (missing_text(retry=-1), "died", "dead: retry is 0"),
    (missing_text().replace('"args"', '"retry":1e400,"args"'), "retry", "retry inf"),
]


@pytest.fixture
def log_lines():
    with LogLines() as lines:
        yield lines


def test_each_bad_payload_spoils_only_itself(redis, start_worker, log_lines):
    texts, good = [], []
    for index, (raw, _, _) in enumerate(BAD_PAYLOADS):
        batch = [f"g{index}-{i}" for i in range(15)]
        good += batch
        texts += [record_text(v) for v in batch] + [raw]
    redis.lpush("queue:default", *texts)
    worker = start_worker(concurrency=2)
    wait_for(lambda: redis.llen("ran") >= len(good) and redis.llen("queue:default") == 0,
             timeout=20)
    expected_dead = [raw for raw, outcome, _ in BAD_PAYLOADS if outcome in ("dead", "died")]
    wait_for(lambda: redis.zcard("dead") == len(expected_dead), message="bad payloads buried")
    assert sorted(ran(redis)) == sorted(good)
    assert all(p.is_alive() for p in worker.manager.processors)
    # a thread acknowledges its last batch with its next fetch, a moment after the batch ran
    wait_for(lambda: not [key for key in redis.keys("forkq:inflight:*") if redis.llen(key)],
             5, message="every fetched job acknowledged")
    dead = [json.loads(text) for text in redis.zrange("dead", 0, -1)]
    for raw, outcome, reason in BAD_PAYLOADS:
        if outcome == "dead":
            assert any(raw_of(job) == raw and reason in job["error_message"] for job in dead), \
                reason
        assert any(reason in line for line in log_lines), reason
    assert sum(job["class"] == "Missing" for job in dead) == 1
    retried = [json.loads(text) for text in redis.zrange("retry", 0, -1)]
    assert len(retried) == sum(1 for _, outcome, _ in BAD_PAYLOADS if outcome == "retry")
    assert all(job["retry_count"] == 0 and job["error_class"] == "forkq.errors.UnknownJobError"
               for job in retried)


def raw_of(job):
    if job.get("raw_encoding") == "base64":
        return base64.b64decode(job["raw"])
    return job.get("raw", json.dumps(job))


def test_failure_lines_say_what_happens_next(redis, start_worker, log_lines):
    start_worker(concurrency=1, max_retries=3)
    redis.lpush("queue:default", missing_text(retry_count=2))
    jobs.explode.perform_async(1)
    jobs.explode_once.perform_async(2)
    wait_for(lambda: len([line for line in log_lines if line.startswith("fail:")]) == 3)
    fails = [line for line in log_lines if line.startswith("fail:")]
    assert any("UnknownJobError" in line and line.endswith("dead after 3 retries")
               for line in fails)
    assert any(line.startswith("fail: ValueError: exploded 1; retry 1/2 in ") for line in fails)
    assert "fail: ValueError: no retry; dropped (retry: false)" in fails



def test_a_job_whose_failure_cannot_be_handled_is_buried_and_the_batch_goes_on(
        redis, start_worker):
    def leave(exc, context):
        raise SystemExit("an error handler that exits")

    forkq.error_handlers.append(leave)
    try:
        redis.lpush("queue:default", record_text("before"), missing_text(), record_text("after"))
        worker = start_worker(concurrency=1)
        wait_for(lambda: sorted(ran(redis)) == ["after", "before"] and redis.zcard("dead") == 1)
    finally:
        forkq.error_handlers.remove(leave)
    (buried,) = [json.loads(text) for text in redis.zrange("dead", 0, -1)]
    assert buried["raw"] == missing_text()
    assert buried["error_message"] == ("forkq could not handle this job: SystemExit: an error "
                                       "handler that exits")
    assert worker.manager.processors[0].is_alive()


def test_jobs_redis_refuses_to_record_hold_no_thread(redis, start_worker, log_lines):
    """A ``result_ttl`` beyond what Redis' EX accepts, pushed by a producer past the client's
    check: five such jobs once held all five threads for ever, and none of 200 others ran."""
    redis.lpush("queue:default", *[record_text(f"p{i}", result_ttl=1e300) for i in range(5)])
    jobs.Record.perform_bulk([[i] for i in range(200)])
    start_worker(concurrency=5)
    wait_for(lambda: redis.llen("ran") == 205, timeout=30)
    assert sum("option 'result_ttl' must be a positive number of seconds up to" in line
               for line in log_lines) >= 5
    assert not redis.keys("forkq:result:*")


def test_a_command_refused_for_a_jobs_data_buries_that_job_only(redis, start_worker):
    """Over-limit jobs while a producer made ``schedule`` a list: rescheduling each is refused
    (WRONGTYPE) for ever; each goes to the dead set with the reason, and the threads go on."""
    import flow_jobs

    redis.lpush("schedule", "x")
    windowed = [flow_jobs.Windowed.perform_async(i) for i in range(5)]
    jobs.Record.perform_bulk([[i] for i in range(50)])
    start_worker(concurrency=2)
    wait_for(lambda: redis.llen("ran") == 50
             and redis.llen("flow:runs") + redis.zcard("dead") == 5, timeout=20)
    dead = [json.loads(text) for text in redis.zrange("dead", 0, -1)]
    assert len(dead) >= 3 and {job["jid"] for job in map(json.loads, (
        raw_of(d) for d in dead))} <= set(windowed)
    assert all(job["error_message"].startswith("Redis refused a command about this job: ")
               and "WRONGTYPE" in job["error_message"] for job in dead)


def test_a_unique_lock_redis_refuses_to_release_does_not_stop_its_job(
        redis, start_worker, log_lines):
    """A unique lock a producer made a hash: its release at start or at success is refused;
    logged, and the job runs (the lock's TTL frees it)."""
    redis.hset("forkq:unique:d1", "x", "y")
    redis.hset("forkq:unique:d2", "x", "y")
    redis.lpush("queue:default", record_text("start", unique_digest="d1", unique_until="start"),
                record_text("success", unique_digest="d2", unique_until="success"))
    start_worker(concurrency=1)
    wait_for(lambda: sorted(ran(redis)) == ["start", "success"])
    wait_for(lambda: len([line for line in log_lines if "unique lock not released" in line]) == 2)
    assert redis.zcard("dead") == 0


def test_a_retry_set_made_a_list_sends_failing_jobs_to_dead(redis, start_worker, log_lines):
    """A producer's ``LPUSH retry x``: each failing job goes to the dead set saying why
    instead of holding its thread, the poller says so once, and still moves scheduled jobs."""
    redis.lpush("retry", "x")
    for value in range(5):
        jobs.explode.perform_async(value)
    jobs.Record.perform_bulk([[i] for i in range(200)])
    start_worker(concurrency=5)
    wait_for(lambda: redis.llen("ran") == 200 and redis.zcard("dead") == 5, timeout=30)
    for job in map(json.loads, redis.zrange("dead", 0, -1)):
        assert job["error_class"] == "ValueError" and job["retry_count"] == 0
        assert job["error_message"] == (f"exploded {job['args'][0]} [not retried: Redis refused "
                                        f"its retry: WRONGTYPE Operation against a key holding "
                                        f"the wrong kind of value]")
    for value in ("later1", "later2", "later3"):  # each moved by a poll of its own
        jobs.Record.perform_in(0.2, value)
        wait_for(lambda: value in ran(redis))
    assert sum(line.startswith("retry cannot be polled") for line in log_lines) == 1
    assert not [line for line in log_lines if line.startswith("poller error")]
    assert redis.lrange("retry", 0, -1) == ["x"]
    redis.delete("retry")
    wait_for(lambda: "retry can be polled again" in log_lines)


def test_a_queue_key_made_a_string_is_waited_out_logged_once(redis, start_worker, log_lines):
    """A fetch refused for its data holds no job to fail: the threads wait it out as an outage
    (one line, not a traceback a second per thread) and run the queue once the key is fixed."""
    redis.set("queue:default", "not a list")
    start_worker(concurrency=3)
    wait_for(lambda: any(line.startswith("Redis refuses the fetch") for line in log_lines))
    redis.delete("queue:default")
    jobs.Record.perform_bulk([[i] for i in range(20)])
    wait_for(lambda: redis.llen("ran") == 20)
    assert sum(line.startswith("Redis refuses the fetch (ResponseError: ") and "WRONGTYPE" in line
               for line in log_lines) == 1
    assert log_lines.count("Redis accepts the fetch again") == 1
    assert not [line for line in log_lines if line.startswith("processor error")]
