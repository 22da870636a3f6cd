"""Flow control in a running worker (in-process threads, real Redis): unique locks released
by the worker, over-limit reschedules, expired jobs, and their counters."""

import json
import logging
import os
import time

import pytest

import flow_jobs
import forkq
from forkq import metrics
from forkq.metrics import store
from forkq.flow.postpone import postponed
from helpers import LogLines, wait_for


def unique_locks(redis):
    return redis.keys("forkq:unique:*")


def lock_states(redis):
    return redis.lrange("flow:lock_at_start", 0, -1)


def runs(redis):
    return redis.lrange("flow:runs", 0, -1)


# --- unique locks ---------------------------------------------------------------------------

def test_unique_until_success_holds_the_lock_while_running_and_frees_it_after(redis,
                                                                                start_worker):
    jid = flow_jobs.UniqueSuccess.perform_async(1)
    assert flow_jobs.UniqueSuccess.perform_async(1) is None
    start_worker()
    wait_for(lambda: runs(redis) == [jid])
    assert lock_states(redis) == ["held"]
    wait_for(lambda: not unique_locks(redis), message="lock released after success")
    assert flow_jobs.UniqueSuccess.perform_async(1) is not None


def test_unique_until_start_frees_the_lock_before_perform(redis, start_worker):
    start_worker()
    jid = flow_jobs.UniqueStart.perform_async(1)
    wait_for(lambda: runs(redis) == [jid])
    assert lock_states(redis) == ["free"]
    assert not unique_locks(redis)


def test_a_retry_keeps_the_lock_and_the_later_success_frees_it(redis, start_worker):
    start_worker()
    jid = flow_jobs.FailOnce.perform_async(1)
    wait_for(lambda: runs(redis) == [jid], timeout=15)
    assert lock_states(redis) == ["held", "held"]
    wait_for(lambda: not unique_locks(redis), message="lock released after the retry succeeded")


def test_death_frees_the_lock(redis, start_worker):
    start_worker()
    flow_jobs.AlwaysFails.perform_async(1)
    wait_for(lambda: redis.zcard("dead") == 1)
    wait_for(lambda: not unique_locks(redis), message="lock released at death")


def test_a_lock_taken_over_by_another_job_is_not_released(redis, start_worker):
    flow_jobs.UniqueSuccess.perform_async(1)
    (lock,) = unique_locks(redis)
    redis.set(lock, "another-jid", px=60_000)  # the first lock expired; another job took it
    start_worker()
    wait_for(lambda: redis.get("stat:processed") == "1", message="the job finished")
    assert redis.get(lock) == "another-jid"


# --- over-limit reschedules -----------------------------------------------------------------

def test_over_limit_jobs_are_rescheduled_to_the_next_window_not_failed(redis, start_worker):
    start_worker(concurrency=2)
    forkq_logger = logging.getLogger("forkq")
    level = forkq_logger.level
    forkq_logger.setLevel(logging.INFO)
    try:
        with LogLines() as lines:
            jids = [flow_jobs.Windowed.perform_async(i) for i in range(2)]
            wait_for(lambda: sorted(runs(redis)) == sorted(jids), timeout=10)
    finally:
        forkq_logger.setLevel(level)
    times = sorted(float(span.split()[1]) for span in redis.lrange("flow:spans", 0, -1))
    # one per two-second window aligned to the epoch: the second ran in the next window
    assert int(times[1] // 2) == int(times[0] // 2) + 1
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0
    assert redis.get("stat:failed") is None
    assert any(line.startswith("over limit flow-window; again in ") and line.endswith(" s")
               for line in lines), lines


@pytest.mark.parametrize("name", ["SingleThreaded", "Single"])
def test_a_postponed_job_keeping_a_result_is_queued_until_it_runs_again(redis, start_worker,
                                                                        name):
    """Put back in ``schedule`` over its limiter's limit, a job's result record is ``queued``
    while it waits, written before it is put back. Before, it stayed ``running``."""
    import async_jobs

    with async_jobs.SINGLE:  # the test holds the only slot
        jid = getattr(async_jobs, name).set(result_ttl=60).perform_async()
        start_worker()
        wait_for(lambda: redis.zcard("schedule") and forkq.result(jid).status == "queued", 10,
                 message="the job put back, queued")
        waiting = forkq.result(jid)
        assert waiting.errors == [] and waiting.finished_at is None and waiting.started_at
    done = forkq.result(jid, wait=10)
    assert done.status == "succeeded" and done.errors == [] and done.attempts == 1


def test_the_rescheduled_payload_counts_its_reschedules():
    payload = {"class": "X", "args": [], "jid": "a" * 24}
    once = json.loads(postponed(payload))
    assert once["overrated"] == 1 and json.loads(postponed(once))["overrated"] == 2
    assert json.loads(postponed({**payload, "overrated": "x"}))["overrated"] == 1


# --- expired jobs ---------------------------------------------------------------------------

def push_raw(redis, jid, **fields):
    payload = {"class": "flow_jobs.Slow", "args": [0], "jid": jid, "queue": "default",
               "retry": True, **fields}
    redis.lpush("queue:default", json.dumps(payload))


def test_a_job_not_started_within_expires_in_is_discarded_and_its_lock_released(redis,
                                                                                start_worker):
    now = time.time()
    redis.set("forkq:unique:d1", "old-float", px=60_000)
    push_raw(redis, "old-float", expires_in=5, enqueued_at=now - 10,
             unique_digest="d1", unique_until="success")
    redis.set("forkq:unique:d0", "old-ms", px=60_000)
    push_raw(redis, "old-ms", expires_in=5, created_at=int((now - 10) * 1000),
             unique_digest="d0", unique_until="start")
    push_raw(redis, "fresh", expires_in=5, enqueued_at=now)
    with LogLines() as lines:
        start_worker()
        wait_for(lambda: runs(redis) == ["fresh"])
        wait_for(lambda: sum("expired:" in line for line in lines) == 2)
    assert runs(redis) == ["fresh"]
    assert not redis.exists("forkq:unique:d1") and not redis.exists("forkq:unique:d0")
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0
    assert any("jid=old-ms" in line and "expires_in 5 s" in line for line in lines)


# --- counters -------------------------------------------------------------------------------

@pytest.fixture
def directory(make_config):
    path = store.prepare(make_config())
    yield path
    os.environ.pop(store.ENV, None)


def test_rescheduled_and_expired_jobs_are_counted_apart(directory):
    observer = metrics.JobObserver()
    observer.job_rescheduled("default", "stripe")
    observer.job_rescheduled("default", "stripe")
    observer.job_expired("low")
    observer.close()
    found = {(s.name, frozenset(s.labels.items())): s.value
             for family in store.collect(directory) for s in family.samples}
    assert found[("forkq_jobs_rescheduled_total",
                  frozenset({"queue": "default", "limiter": "stripe"}.items()))] == 2
    assert found[("forkq_jobs_expired_total", frozenset({"queue": "low"}.items()))] == 1


# --- soft time limits -----------------------------------------------------------------------

def test_a_soft_time_limit_is_raised_in_the_job_which_cleans_up(redis, start_worker):
    start_worker()
    started = time.monotonic()
    jid = flow_jobs.CatchesSoftLimit.perform_async()
    wait_for(lambda: runs(redis) == [jid])
    assert 0.3 <= time.monotonic() - started < 3
    assert redis.lrange("flow:cleaned", 0, -1) == [jid]
    assert redis.zcard("retry") == 0


def test_a_soft_time_limit_not_caught_fails_the_job(redis, start_worker):
    worker = start_worker()
    jid = flow_jobs.MissesSoftLimit.perform_async()
    wait_for(lambda: redis.zcard("retry") == 1)
    job = json.loads(redis.zrange("retry", 0, -1)[0])
    assert job["jid"] == jid and job["error_class"] == "forkq.SoftTimeLimitExceeded"
    assert not worker.services.watchdog.entries
    flow_jobs.UniqueStart.perform_async(2)  # the thread runs on, no exception left pending
    wait_for(lambda: len(runs(redis)) == 1)


# --- options --------------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["soft_time_limit", "time_limit", "expires_in"])
def test_limit_options_travel_in_the_payload_and_are_checked(redis, option):
    flow_jobs.Slow.set(**{option: 2.5}).perform_async(0)
    (text,) = redis.lrange("queue:default", 0, -1)
    assert json.loads(text)[option] == 2.5
    for bad in (0, -1, "5", True, float("inf")):
        with pytest.raises(TypeError, match=f"option '{option}' must be a positive number of "
                                            f"seconds, not"):
            flow_jobs.Slow.set(**{option: bad})


def test_a_poison_job_frees_its_lock_and_a_recovered_one_keeps_it(redis, make_config):
    from forkq.worker.recovery import Recovery
    from forkq.worker.services import Services

    config = make_config(concurrency=1)
    recovery = Recovery(Services.build(config, config.redis_url, "h:1:0"), death_handlers=[])
    redis.set("forkq:unique:d2", "p" * 24, px=60_000)
    text = json.dumps({"class": "flow_jobs.Slow", "args": [0], "jid": "p" * 24, "retry": True,
                       "queue": "default", "unique_digest": "d2", "unique_until": "success"})
    for _ in range(3):
        redis.rpush("forkq:inflight:h:9:0:0", text)
        recovery.recover_list("forkq:inflight:h:9:0:0")
        assert redis.rpop("queue:default") == text and redis.exists("forkq:unique:d2")
    redis.rpush("forkq:inflight:h:9:0:0", text)
    recovery.recover_list("forkq:inflight:h:9:0:0")
    assert redis.zcard("dead") == 1 and not redis.exists("forkq:unique:d2")


@pytest.mark.parametrize("fields, hooks, released", [
    ({"retry": True}, {}, False),
    ({"retry": False}, {}, True),
    ({"retry": 0}, {}, True),
    ({"retry": True}, {"retry_in": lambda count, exc: "discard"}, True),
    ({"retry": True}, {"retry_in": lambda count, exc: "kill"}, True),
    ({"retry": True}, {"retry_on": (KeyError,)}, True),
    ({"retry": True, "unique_until": "start"}, {"retry_on": (KeyError,)}, False),
])
def test_every_way_of_dying_frees_the_lock_and_a_retry_keeps_it(redis, fields, hooks, released):
    from forkq.dead import DeadWriter
    from forkq.keys import Keys
    from forkq.worker.retry import RetryWriter

    keys = Keys("")
    writer = RetryWriter(keys, DeadWriter(keys, 100, 3600), 25, [])
    redis.set("forkq:unique:d3", "j" * 24, px=60_000)
    payload = {"class": "X", "args": [], "jid": "j" * 24, "queue": "default",
               "unique_digest": "d3", "unique_until": "success", **fields}
    writer.handle(redis, payload, RuntimeError("boom"), hooks)
    assert redis.exists("forkq:unique:d3") == (0 if released else 1)
