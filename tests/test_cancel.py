"""Cancelling a job in each state: queued, scheduled, retrying, fetched by a worker but not
started, running in a thread, running as a coroutine, and running while ignoring its cancel."""

import json
import time

import pytest

import control_jobs
import forkq
from forkq import api
from forkq.flow import cancel as cancelling
from forkq.keys import Keys
from helpers import wait_for
from test_worker import log_text, spawn, stop_all

KEEP_RESULT = {"result_ttl": 300}


def status(jid):
    found = forkq.result(jid)
    return found.status if found else None


def lines(redis, name):
    return redis.lrange(f"control:{name}", 0, -1)


def test_a_queued_job_is_removed_and_ends_cancelled(redis):
    jid = control_jobs.Plain.set(unique_for=60, **KEEP_RESULT).perform_async(1)
    other = control_jobs.Plain.perform_async(2)
    assert redis.keys("forkq:unique:*")
    assert forkq.cancel(jid) == "queued"
    assert [json.loads(t)["jid"] for t in redis.lrange("queue:default", 0, -1)] == [other]
    assert status(jid) == "cancelled" and forkq.result(jid, wait=5).status == "cancelled"
    assert not redis.keys("forkq:unique:*")  # the lock is released with the job
    assert api.default().cancelled == 1 and not redis.exists(Keys().cancels)
    assert forkq.cancel(jid) is None  # gone: found nowhere the second time


def test_a_job_deep_in_a_long_queue_is_found_one_bounded_call_at_a_time(redis, monkeypatch):
    monkeypatch.setattr(cancelling, "SCAN_COUNT", 7)
    jids = [control_jobs.Plain.perform_async(i) for i in range(50)]
    assert forkq.cancel(jids[0]) == "queued"  # the oldest: the far (right) end of the list
    assert redis.llen("queue:default") == 49


def test_scheduled_and_retrying_jobs_are_removed(redis):
    later = control_jobs.Plain.set(**KEEP_RESULT).perform_in(600, 1)
    failed = {"class": "control_jobs.Plain", "args": [2], "jid": "c" * 24, "queue": "default",
              "retry": True, "retry_count": 0, "error_class": "ValueError"}
    redis.zadd("retry", {json.dumps(failed): time.time() + 600})
    assert forkq.cancel(later) == "scheduled" and redis.zcard("schedule") == 0
    assert forkq.cancel("c" * 24) == "retry" and redis.zcard("retry") == 0
    assert status(later) == "cancelled" and api.default().cancelled == 2


def test_an_unknown_jid_is_found_nowhere_and_a_bad_one_is_refused(redis):
    assert forkq.cancel("d" * 24) is None
    with pytest.raises(TypeError, match="jid must be a job id"):
        forkq.cancel('a"b')


def test_a_job_pushed_after_its_cancel_is_dropped_at_fetch(redis, start_worker):
    """A job moving between two places as the search passes is caught by its mark."""
    jid = "e" * 24
    assert forkq.cancel(jid) is None
    redis.lpush("queue:default", json.dumps({"class": "control_jobs.Plain", "args": [9],
                                             "jid": jid, "queue": "default", "retry": True,
                                             **KEEP_RESULT}))
    start_worker(require=["control_jobs"])
    wait_for(lambda: status(jid) == "cancelled", message="the job ended as cancelled")
    assert lines(redis, "runs") == [] and redis.llen("queue:default") == 0
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0


def test_a_fetched_job_whose_cancel_the_process_knows_is_dropped_before_it_starts(
        redis, start_worker):
    """A job a thread holds in its batch when the process learns of its cancel: the processor
    asks the process's copy of the marks (no mark in Redis is needed then)."""
    worker = start_worker(require=["control_jobs"], concurrency=1)
    jid = "f" * 24
    worker.services.cancels.learn([(jid, time.time())], time.time())
    redis.lpush("queue:default", json.dumps({"class": "control_jobs.Plain", "args": [1],
                                             "jid": jid, "queue": "default", **KEEP_RESULT}))
    wait_for(lambda: status(jid) == "cancelled", message="dropped as cancelled")
    after = control_jobs.Plain.set(**KEEP_RESULT).perform_async(2)
    assert forkq.result(after, wait=10).status == "succeeded"
    assert lines(redis, "runs") == ["default 2"] and api.default().cancelled == 1


@pytest.fixture
def worker(redis, redis_url, tmp_path):
    process = spawn(tmp_path, redis_url, require=["control_jobs"], concurrency=2, timeout=5)
    yield process
    stop_all([process], 20)


@pytest.mark.slow
@pytest.mark.parametrize("job", [control_jobs.Sleeper, control_jobs.AsyncSleeper])
def test_a_running_job_is_interrupted_within_about_a_second(redis, worker, job):
    jid = job.set(unique_for=120, unique_until="success", **KEEP_RESULT).perform_async(60)
    wait_for(lambda: lines(redis, "started") == [jid], timeout=15, message="the job started")
    asked = time.monotonic()
    assert forkq.cancel(jid) == "running"
    ended = forkq.result(jid, wait=10)
    took = time.monotonic() - asked
    print(f"{job.__name__} ended as cancelled {took:.2f} s after forkq.cancel")
    assert ended.status == "cancelled" and took < 1.5, (ended.status, took)
    assert lines(redis, "cleaned") == [f"{jid} True"]  # its finally ran; cancelled() said so
    assert lines(redis, "finished") == []
    wait_for(lambda: not redis.keys("forkq:inflight:*:[0-9]*") or
             all(redis.llen(k) == 0 for k in redis.keys("forkq:inflight:*")),
             message="acknowledged")
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0
    assert not redis.keys("forkq:unique:*") and api.default().cancelled == 1
    # The process goes on running jobs.
    assert forkq.result(control_jobs.Plain.set(**KEEP_RESULT).perform_async(1),
                        wait=10).status == "succeeded"


@pytest.mark.slow
def test_a_job_ignoring_its_cancel_is_handled_as_stuck(redis, worker, tmp_path):
    jid = control_jobs.Stubborn.set(**KEEP_RESULT).perform_async(60)
    wait_for(lambda: lines(redis, "started") == [jid], timeout=15, message="the job started")
    assert forkq.cancel(jid) == "running"
    assert forkq.result(jid, wait=15).status == "cancelled"
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0
    wait_for(lambda: worker.poll() is not None, timeout=20, message="the process retired")
    text = log_text(tmp_path)
    assert "ignored its cancel" in text
    # forkq's lines about the job carry its context, as its own lines do
    for words in ("cancelled while running", "did not end within"):
        (line,) = [each for each in text.splitlines() if words in each]
        assert f"jid={jid}" in line, line


def test_forkqctl_cancel_says_where_the_job_was(capsys, tmp_path, redis, redis_url):
    from forkq import ctl

    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: {redis_url}\ndata_dir: {tmp_path / 'data'}\n")
    jid = control_jobs.Plain.perform_async(1)
    assert ctl.main(["cancel", jid, "-c", str(config)]) == 0
    assert f"job {jid} was queued: removed" in capsys.readouterr().out
    assert ctl.main(["cancel", jid, "-c", str(config)]) == 1
    assert "was found nowhere" in capsys.readouterr().out
    assert ctl.main(["status", "-c", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["cancelled"] == 1


def test_the_fetch_flags_a_job_whose_jid_is_marked(redis, redis_url):
    """While its process knows marks exist, the fetch script checks each job it takes,
    whichever "jid" of its text (args may hold one) is marked; the processor then asks for
    the job's own jid."""
    from test_pause import fetcher

    take = fetcher(redis_url)
    take.cancels.marked = True
    assert forkq.cancel("a" * 24) is None
    plain = json.dumps({"class": "x", "args": [], "jid": "b" * 24})
    marked = json.dumps({"class": "x", "args": [], "jid": "a" * 24}, separators=(",", ":"))
    nested = json.dumps({"class": "x", "args": [{"jid": "a" * 24}], "jid": "c" * 24})
    redis.lpush("queue:default", plain, marked, nested)  # fetched from the right: in order
    take.batch = 10
    assert [(json.loads(f.text)["jid"][0], f.maybe_cancelled) for f in take.fetch()] == [
        ("b", False), ("a", True), ("c", True)]


@pytest.mark.slow
def test_a_coroutine_job_waiting_for_a_running_slot_is_cancelled_unstarted(
        redis, redis_url, tmp_path):
    process = spawn(tmp_path, redis_url, require=["control_jobs"], concurrency=2,
                    async_concurrency=1, timeout=2)
    try:
        first = control_jobs.AsyncSleeper.set(**KEEP_RESULT).perform_async(60)
        wait_for(lambda: lines(redis, "started") == [first], timeout=15, message="one runs")
        waiting = control_jobs.AsyncSleeper.set(**KEEP_RESULT).perform_async(60)
        wait_for(lambda: any(waiting in text for key in redis.keys("forkq:inflight:*:async")
                             for text in redis.lrange(key, 0, -1)),
                 timeout=15, message="handed to the loop")
        assert forkq.cancel(waiting) == "running"
        assert forkq.result(waiting, wait=10).status == "cancelled"
        assert lines(redis, "started") == [first]  # it never started
        assert forkq.cancel(first) == "running"
        assert forkq.result(first, wait=10).status == "cancelled"
        assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0
    finally:
        stop_all([process], 20)


# --- batches and chains


def test_a_cancelled_batch_member_counts_as_done_not_success(redis):
    from batch_jobs import Callback, Record
    from forkq.flow import batch_scripts

    with forkq.batch(on_complete=Callback, on_success=Callback, on_death=Callback) as b:
        first = Record.perform_async(1)
        Record.perform_async(2)
    assert forkq.cancel(first) == "queued"
    (second,) = [json.loads(t) for t in redis.lrange("queue:default", 0, -1)]
    status = forkq.batch_status(b.bid)
    assert not status.complete and status.pending == 2
    assert status.failed_jids == {first: "Cancelled: cancelled (forkq.cancel)"}
    assert batch_scripts.succeeded(redis, Keys(), second, ("", "")) == 1
    status = forkq.batch_status(b.bid)
    assert status.complete and not status.success and status.dead_jids == []
    callbacks = [json.loads(t) for t in redis.lrange("queue:default", 0, -1)]
    assert [c["args"][1] for c in callbacks if c["class"] == "batch_jobs.Callback"] == [
        "complete"]


def test_a_cancelled_chain_step_ends_its_chain_as_cancelled(redis):
    from batch_jobs import Add, Mul

    last = forkq.chain(Add.s(1, 2), Mul.s(10)).perform_async()
    (first,) = [json.loads(t) for t in redis.lrange("queue:default", 0, -1)]
    assert forkq.cancel(first["jid"]) == "queued"
    assert status(last) == "cancelled" and redis.llen("queue:default") == 0
