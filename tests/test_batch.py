"""Batches (``flow/batch.py``, ``flow/batch_scripts.py``): the commit, each member's end
counted once, callbacks fired once, children, reopening, and the whole under kill -9 of a
worker child and of Redis."""

from __future__ import annotations

import json
import os
import signal

import pytest

import forkq
from batch_jobs import (AsyncSquare, Callback, Doomed, Flaky, Parent, Record, Slowish,
                        Spawner)
from forkq import client as forkq_client
from forkq.flow import batch_scripts
from forkq.keys import Keys
from forkq.worker.retry import Decision, Outcome
from helpers import wait_for

KEYS = Keys()


def callbacks(redis) -> list:
    return [json.loads(text) for text in redis.lrange("batch:callbacks", 0, -1)]


def events(redis, bid: str) -> list[str]:
    return sorted(event for b, event, _ in callbacks(redis) if b == bid)


def queued(redis, queue: str = "default") -> list[dict]:
    return [json.loads(text) for text in redis.lrange(f"queue:{queue}", 0, -1)]


# --- the commit


def test_jobs_join_the_batch_and_are_pushed_with_its_record_at_the_blocks_end(redis):
    with forkq.batch(description="import", on_success=Callback) as b:
        jid = Record.perform_async(1)
        bulk = Record.perform_bulk([[2], [3]])
        later = Record.perform_in(60, 4)
        assert redis.llen("queue:default") == 0 and forkq.batch_status(b.bid) is None
    status = forkq.batch_status(b.bid)
    assert status.total == 4 and status.pending == 4 and status.description == "import"
    assert not status.complete and not status.success
    pushed = queued(redis)
    assert sorted(p["jid"] for p in pushed) == sorted([jid, *bulk])
    assert {p["bid"] for p in pushed} == {b.bid}
    (scheduled,) = redis.zrange("schedule", 0, -1)
    assert json.loads(scheduled)["jid"] == later and json.loads(scheduled)["bid"] == b.bid
    assert sorted(b.jids) == sorted([jid, *bulk, later])


@pytest.mark.parametrize("end, job, counted_by", [
    ("succeeded", Record, "forkq.flow.chain.succeeded"),
    ("failed", Doomed, "forkq.flow.batch_scripts.failed")], ids=["success", "death"])
def test_a_members_final_result_is_written_before_its_end_pushes_the_callbacks(
        redis, start_worker, monkeypatch, end, job, counted_by):
    """The callback a member's end fires, run at once by another thread, must find the
    member's result final: the record is written before the count that pushes it."""
    import importlib

    module_name, name = counted_by.rsplit(".", 1)
    module = importlib.import_module(module_name)
    count, status_at_count = getattr(module, name), []

    def watched(client, keys, payload, *args):
        status_at_count.append(forkq.result(payload["jid"]).status)
        return count(client, keys, payload, *args)

    monkeypatch.setattr(module, name, watched)
    with forkq.batch(on_complete=Callback):
        jid = job.set(result_ttl=60).perform_async("kept")
    start_worker(concurrency=1)
    wait_for(lambda: len(callbacks(redis)) == 1, 10, message="the complete callback")
    assert status_at_count == [end] and forkq.result(jid).status == end


def test_a_batch_of_ten_thousand_jobs_commits_in_one_script(redis):
    with forkq.batch() as b:
        jids = Record.perform_bulk([[i] for i in range(10_000)])
        Record.set(queue="other").perform_bulk([[i] for i in range(10)])
        later = [Record.perform_in(60, i) for i in range(2)]
    assert forkq.batch_status(b.bid).total == 10_012
    assert redis.llen("queue:default") == 10_000 and redis.zcard("schedule") == 2
    # the order of one multi-value push: the first job at the right end, fetched first
    assert json.loads(redis.lindex("queue:default", -1))["jid"] == jids[0]
    assert json.loads(redis.lindex("queue:default", 0))["jid"] == jids[-1]
    assert redis.llen("queue:other") == 10 and later


def test_a_block_that_raises_pushes_nothing_and_writes_no_record(redis):
    with pytest.raises(RuntimeError):
        with forkq.batch(on_success=Callback) as b:
            Record.perform_async(1)
            raise RuntimeError("producer failed")
    assert redis.llen("queue:default") == 0 and forkq.batch_status(b.bid) is None
    assert redis.keys("forkq:batch*") == []
    Record.perform_async(2)  # the block is closed: a push goes straight out again
    assert "bid" not in queued(redis)[0]


def test_an_empty_batch_fires_its_callbacks_at_its_commit(redis):
    with forkq.batch(on_complete=Callback, on_success="Other::Callback",
                     callback_queue="critical", data=[1]) as b:
        pass
    texts = [json.loads(t) for t in redis.lrange("queue:critical", 0, -1)]
    assert sorted((t["class"], t["args"][1]) for t in texts) == [
        ("Other::Callback", "success"), ("batch_jobs.Callback", "complete")]
    assert all(t["args"] == [b.bid, t["args"][1], [1]] and "enqueued_at" in t for t in texts)
    status = forkq.batch_status(b.bid)
    assert status.complete and status.success and status.total == 0
    assert 0 < redis.ttl(KEYS.batch(b.bid)) <= 86400  # kept for a day after success


def test_unique_jobs_are_refused_inside_a_batch_naming_the_job(redis):
    with pytest.raises(ValueError, match="unique job .* cannot join batch"):
        with forkq.batch():
            Record.set(unique_for=60).perform_async(1)
    assert redis.llen("queue:default") == 0


def test_a_batch_inside_an_open_block_is_its_child_committed_with_it(redis):
    with forkq.batch() as outer:
        Record.perform_async(1)
        with forkq.batch() as inner:
            Record.perform_async(2)
        assert forkq.batch_status(inner.bid) is None  # not before its parent's commit
    assert forkq.batch_status(inner.bid).parent == outer.bid
    assert redis.hget(KEYS.batch(outer.bid), "kids_unok") == "1"
    with forkq.batch(on_success=Callback) as empty:
        with forkq.batch(on_success=Callback) as empty_child:
            pass
    # the child succeeded at the commit, then its parent, counted before: both fired
    assert forkq.batch_status(empty.bid).success and forkq.batch_status(empty_child.bid).success
    assert redis.hget(KEYS.batch(empty.bid), "kids_unok") == "0"


def test_a_batch_opened_by_a_job_whose_batch_expired_has_no_parent(redis):
    from forkq.flow import context

    token = context.running({"bid": "expired"})
    try:
        with forkq.batch() as b:
            Record.perform_async(1)
    finally:
        context.done(token)
    assert forkq.batch_status(b.bid).parent is None and not redis.exists(KEYS.batch("expired"))


def test_under_forkq_testing_batch_jobs_go_to_its_sink_and_no_record_is_written(redis):
    from forkq import testing

    with testing.fake() as jobs:
        with forkq.batch(on_success=Callback) as b:
            Record.perform_async(1)
    assert [j["args"] for j in jobs.jobs_for(Record)] == [[1]]
    assert forkq.batch_status(b.bid) is None and redis.llen("queue:default") == 0


def test_reopening_an_unknown_batch_is_refused(redis):
    with pytest.raises(Exception, match="no batch nope"):
        with forkq.batch.reopen("nope"):
            Record.perform_async(1)
    assert redis.llen("queue:default") == 0


# --- counting, script by script (the key layout is what is under test)


def failure(payload: dict, action: str) -> Outcome:
    text = json.dumps({**payload, "error_class": "RuntimeError", "error_message": "no"})
    return Outcome(Decision(action), text, 1.0, bury=action == "dead")


def test_a_job_retried_three_times_counts_once_and_success_fires_once(redis):
    with forkq.batch(on_complete=Callback, on_success=Callback) as b:
        Record.perform_async(1)
    (payload,) = queued(redis)
    redis.delete("queue:default")
    for count in range(3):
        batch_scripts.failed(redis, KEYS, payload,
                             failure({**payload, "retry_count": count}, "retry"), [0, 0, 100])
    status = forkq.batch_status(b.bid)
    assert status.complete and status.failures == 1 and status.pending == 1
    assert redis.zcard("retry") == 3  # each retry written by the counting script
    redis.rpush("private", "job-text")
    assert batch_scripts.succeeded(redis, KEYS, payload, ("private", "job-text")) == 1
    assert batch_scripts.succeeded(redis, KEYS, payload, ("private", "job-text")) == 0
    status = forkq.batch_status(b.bid)
    assert status.success and status.failures == 0 and status.pending == 0
    assert [json.loads(t)["args"][1] for t in redis.lrange("queue:default", 0, -1)] == [
        "success", "complete"]


def test_a_success_no_longer_held_counts_nothing(redis):
    """A job pushed back at the shutdown deadline (or recovered elsewhere) runs again: its
    first success is not counted."""
    with forkq.batch(on_success=Callback) as b:
        Record.perform_async(1)
    (payload,) = queued(redis)
    assert batch_scripts.succeeded(redis, KEYS, payload, ("private", "not-there")) == 0
    assert forkq.batch_status(b.bid).pending == 1


def test_a_death_fires_death_and_complete_once_and_never_success(redis):
    with forkq.batch(on_death=Callback, on_complete=Callback, on_success=Callback) as b:
        Record.perform_async(1)
        Record.perform_async(2)
    first, second = queued(redis)
    redis.delete("queue:default")
    for payload in (first, second):
        batch_scripts.failed(redis, KEYS, payload, failure(payload, "dead"), [2.0, 0, 100])
    status = forkq.batch_status(b.bid)
    assert status.complete and not status.success and status.failures == 2
    assert sorted(status.dead_jids) == sorted([first["jid"], second["jid"]])
    assert status.failed_jids[first["jid"]] == "RuntimeError: no"
    assert redis.zcard("dead") == 2
    assert sorted(json.loads(t)["args"][1] for t in redis.lrange("queue:default", 0, -1)) == [
        "complete", "death"]


def test_a_poison_member_is_buried_and_counted_in_one_step(redis, make_config):
    from test_recovery import recovery_for

    with forkq.batch(on_death=Callback, on_complete=Callback) as b:
        Record.perform_async(1)
    (text,) = redis.lrange("queue:default", 0, -1)
    redis.delete("queue:default")
    recovery = recovery_for(make_config)
    for _ in range(4):  # its process died while running it, four times
        redis.rpush("forkq:inflight:h:3:0:0", text)
        recovery.recover_list("forkq:inflight:h:3:0:0")
        redis.delete("queue:default")
    assert redis.zcard("dead") == 1 and not redis.exists("forkq:inflight:h:3:0:0")
    status = forkq.batch_status(b.bid)
    assert status.complete and len(status.dead_jids) == 1
    assert "PoisonJobError" in status.failed_jids[status.dead_jids[0]]


def test_the_api_and_the_batches_page_show_progress_and_link_dead_jobs(redis, make_config):
    from test_web import Browser

    from forkq.api import Api
    from forkq.web.app import App

    xss = "<script>alert(1)</script>"
    with forkq.batch(description=xss) as b:
        Record.perform_async(1)
        Record.perform_async(2)
    first, second = queued(redis)
    batch_scripts.failed(redis, KEYS, first, failure(first, "dead"), [2.0, 0, 100])
    redis.rpush("private", "text")
    batch_scripts.succeeded(redis, KEYS, second, ("private", "text"))
    with forkq.batch() as done:
        pass
    api = Api(redis)
    assert api.batches.size == 1 and [s.bid for s in api.batches.page()] == [b.bid]
    browser = Browser(App(make_config(), redis, environ={}))
    listing = browser.get("/batches").text
    assert b.bid in listing and done.bid not in listing  # succeeded: no longer open
    assert xss not in listing and "&lt;script&gt;" in listing and "1 / 2" in listing
    page = browser.get(f"/batches/{b.bid}").text
    assert f'href="/morgue/{first["jid"]}"' in page and "RuntimeError: no" in page
    assert browser.get("/batches/nope").status == 404
    redis.delete(KEYS.batch(b.bid))  # expired: dropped from the index when listed
    assert api.batches.page() == [] and api.batches.size == 0


def test_the_open_batches_gauge(redis, make_config):
    from forkq.metrics import collector

    with forkq.batch():
        Record.perform_async(1)
    with forkq.batch():
        pass  # succeeded at once: not open
    facts = collector.RedisReader(make_config()).read()
    gauges = {family.name: family.samples[0].value for family in collector._redis_series(facts)
              if family.name == "forkq_batches_open"}
    assert gauges == {"forkq_batches_open": 1}


# --- real workers


def test_retry_then_success_fires_complete_then_success(redis, start_worker):
    with forkq.batch(on_complete=Callback, on_success=Callback, data={"u": 7}) as b:
        for index in range(5):
            Record.perform_async(index)
        flaky = Flaky.perform_async("b1")
    start_worker(poll_interval=60)  # the retry waits in the retry set
    wait_for(lambda: events(redis, b.bid) == ["complete"], 10, message="complete")
    status = forkq.batch_status(b.bid)
    assert status.failures == 1 and list(status.failed_jids) == [flaky]
    assert "first run of b1" in status.failed_jids[flaky] and status.pending == 1
    start_worker(poll_interval=0.1)
    wait_for(lambda: events(redis, b.bid) == ["complete", "success"], 10, message="success")
    status = forkq.batch_status(b.bid)
    assert (status.total, status.pending, status.failures) == (6, 0, 0)
    assert [data for _, _, data in callbacks(redis)] == [{"u": 7}] * 2


def test_a_dead_job_fires_death_and_complete_but_not_success(redis, start_worker):
    with forkq.batch(on_complete=Callback, on_success=Callback, on_death=Callback) as b:
        Record.perform_async(1)
        dead = Doomed.perform_async()
    start_worker()
    wait_for(lambda: events(redis, b.bid) == ["complete", "death"], 10)
    status = forkq.batch_status(b.bid)
    assert status.dead_jids == [dead] and not status.success and status.pending == 1
    assert redis.zcard("dead") == 1


def test_an_expired_member_counts_as_dead(redis, start_worker):
    with forkq.batch(on_complete=Callback, on_death=Callback, on_success=Callback) as b:
        late = Record.set(expires_in=0.01).perform_async(1)
        Record.perform_async(2)
    wait_for(lambda: (redis.time()[0] + redis.time()[1] / 1e6) > json.loads(
        redis.lindex("queue:default", -1))["enqueued_at"] + 0.05, 5)
    start_worker()
    wait_for(lambda: events(redis, b.bid) == ["complete", "death"], 10)
    status = forkq.batch_status(b.bid)
    assert status.dead_jids == [late] and "expired" in status.failed_jids[late]
    assert not status.success and redis.llen("batch:ran") == 1
    wait_for(lambda: not any(redis.lrange(k, 0, -1) for k in redis.keys("forkq:inflight*")), 5)


def test_a_malformed_member_is_buried_and_counted_dead_in_its_batch(redis, start_worker):
    """A member a producer spoiled (its args made a dict) cannot run: buried raw, as any
    malformed payload, and counted dead in its batch in the same call, which then completes
    rather than wait for it."""
    with forkq.batch(on_complete=Callback, on_death=Callback, on_success=Callback) as b:
        spoiled = Record.perform_async(1)
        Record.perform_async(2)
    texts = redis.lrange("queue:default", 0, -1)
    redis.delete("queue:default")
    for text in texts:
        job = json.loads(text)
        if job["jid"] == spoiled:
            job["args"] = {"n": 1}
        redis.rpush("queue:default", json.dumps(job))
    start_worker()
    wait_for(lambda: events(redis, b.bid) == ["complete", "death"], 10)
    status = forkq.batch_status(b.bid)
    assert status.dead_jids == [spoiled] and status.pending == 1 and not status.success
    assert "'args' is dict, not a list" in status.failed_jids[spoiled]
    (buried,) = [json.loads(text) for text in redis.zrange("dead", 0, -1)]
    assert buried["class"] == "forkq.MalformedJob" and json.loads(buried["raw"])["jid"] == spoiled
    assert redis.llen("batch:ran") == 1


def test_a_malformed_member_the_poller_buries_is_counted_dead_too(redis, start_worker):
    """The same member spoiled in the schedule: the poller buries it and then counts it."""
    with forkq.batch(on_complete=Callback, on_death=Callback) as b:
        spoiled = Record.perform_async(1)
    job = json.loads(redis.rpop("queue:default"))
    redis.zadd("schedule", {json.dumps({**job, "args": "1"}): 0})
    start_worker()
    wait_for(lambda: events(redis, b.bid) == ["complete", "death"], 10)
    status = forkq.batch_status(b.bid)
    assert status.dead_jids == [spoiled]
    assert "in schedule: payload's 'args' is string" in status.failed_jids[spoiled]
    assert redis.zcard("dead") == 1 and redis.zcard("schedule") == 0


def test_a_limiters_reschedule_counts_nothing(redis, start_worker):
    from batch_jobs import OverOnce

    with forkq.batch(on_complete=Callback, on_success=Callback) as b:
        OverOnce.perform_async("a")
    start_worker()
    wait_for(lambda: events(redis, b.bid) == ["complete", "success"], 10)
    assert redis.get("batch:over:a") == "2"  # rescheduled once, then ran
    status = forkq.batch_status(b.bid)
    assert status.failures == 0 and status.failed_jids == {}
    assert status.fired["complete"] == status.fired["success"]  # both at its one success


def test_a_running_job_adds_to_its_batch_before_it_finishes(redis, start_worker):
    from batch_jobs import SpawnerByHandle

    with forkq.batch(on_success=Callback) as b:
        Spawner.perform_async(3)
        SpawnerByHandle.perform_async(2)
    start_worker()
    wait_for(lambda: events(redis, b.bid) == ["success"], 10)
    assert redis.llen("batch:ran") == 7
    assert forkq.batch_status(b.bid).total == 7


def test_a_child_batch_succeeds_before_its_parent(redis, start_worker):
    with forkq.batch(on_success=Callback, on_complete=Callback, description="parent") as b:
        Parent.perform_async(3)
    start_worker()
    # the callbacks are jobs, run in any order once fired: wait for all four
    wait_for(lambda: len(callbacks(redis)) == 4, 15, message="both batches' two callbacks")
    order = [(bid, event) for bid, event, _ in callbacks(redis)]
    child = next(bid for bid, _ in order if bid != b.bid)
    assert forkq.batch_status(child).parent == b.bid
    # fired by the same script when the child's last job succeeded: never the parent first
    inner, outer = forkq.batch_status(child).fired, forkq.batch_status(b.bid).fired
    assert inner["success"] <= outer["success"] and inner["complete"] <= outer["complete"]
    assert sorted(order) == sorted([(child, "complete"), (child, "success"),
                                    (b.bid, "complete"), (b.bid, "success")])


def test_coroutine_jobs_count_in_a_batch(redis, start_worker):
    with forkq.batch(on_success=Callback) as b:
        for n in range(4):
            AsyncSquare.perform_async(n)
    start_worker()
    wait_for(lambda: events(redis, b.bid) == ["success"], 10)
    assert forkq.batch_status(b.bid).pending == 0


def test_asyncio_enqueues_join_the_batch(redis):
    import asyncio

    from forkq import aio

    async def enqueue():
        try:
            return await aio.perform_async(Record, 1)
        finally:
            await aio.aclose()

    with forkq.batch() as b:
        jid = asyncio.run(enqueue())
    assert b.jids == [jid] and queued(redis)[0]["bid"] == b.bid

    async def in_async_block():
        try:
            async with forkq.batch(description="async") as block:
                await aio.perform_async(Record, 2)
                assert redis.llen("queue:default") == 1  # not yet pushed
            return block
        finally:
            await aio.aclose()

    block = asyncio.run(in_async_block())
    assert forkq.batch_status(block.bid).total == 1 and redis.llen("queue:default") == 2


@pytest.mark.slow
def test_a_job_pushed_back_at_the_shutdown_deadline_counts_when_it_runs_again(
        redis, redis_url, tmp_path):
    from batch_jobs import SlowFirst
    from test_worker import spawn

    with forkq.batch(on_complete=Callback, on_success=Callback) as b:
        jid = SlowFirst.perform_async()
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = spawn(tmp_path / "a", redis_url, require=["batch_jobs"], timeout=0.5)
    try:
        wait_for(lambda: redis.lrange("batch:started", 0, -1) == [jid], 15, message="started")
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
    finally:
        first.kill()
    assert redis.lrange("queue:default", 0, -1) and callbacks(redis) == []
    assert forkq.batch_status(b.bid).pending == 1 and not forkq.batch_status(b.bid).complete
    second = spawn(tmp_path / "b", redis_url, require=["batch_jobs"])
    try:
        wait_for(lambda: events(redis, b.bid) == ["complete", "success"], 15)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)
    assert redis.lrange("batch:ran", 0, -1) == [jid]


# --- kill -9 of a worker child and of Redis, mid-batch


@pytest.mark.slow
@pytest.mark.fault
def test_2000_jobs_through_a_child_kill_and_a_redis_restart_fire_each_callback_once(
        tmp_path, redis_url):
    from masters import Master
    from test_redis_restart import DurableRedis

    server = DurableRedis(tmp_path / "redis").start()
    master = None
    try:
        forkq_client.configure(redis_url=server.url, namespace="")
        client = server.client()
        with forkq.batch(on_complete=Callback, on_success=Callback, on_death=Callback) as b:
            Slowish.perform_bulk([[i] for i in range(1990)])
            for i in range(10):
                Flaky.perform_async(f"big-{i}")
        (tmp_path / "m").mkdir()
        master = Master(tmp_path / "m", redis_url=server.url, require=["batch_jobs"],
                        processes=2, concurrency=4, poll_interval=0.2).start()
        pids = master.ready_pids()
        wait_for(lambda: client.llen("batch:ran") >= 400, 30, message="400 runs")
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: client.llen("batch:ran") >= 1000, 30, message="1000 runs")
        ran_before_restart = client.llen("batch:ran")
        server.kill()
        server.start()
        assert ran_before_restart < 2000, "the batch ended before Redis was killed"
        wait_for(lambda: "success" in events(client, b.bid), 45, message="success")
        wait_for(lambda: client.llen("queue:default") == 0 and not client.keys(
            "forkq:inflight:*"), 10, message="drained")
        status = forkq.batch_status(b.bid)
        assert events(client, b.bid) == ["complete", "success"]
        assert (status.total, status.pending, status.failures) == (2000, 0, 0)
        assert set(client.lrange("batch:ran", 0, -1)) == set(b.jids)
    finally:
        if master is not None:
            master.kill_all()
        server.kill()
        forkq_client.configure(redis_url=redis_url, namespace="")


@pytest.mark.slow
def test_batch_jobs_stay_runnable_by_ruby_sidekiq_oss(redis, redis_url, tmp_path):
    import subprocess

    from test_sidekiq_compat import RUBY_DIR, RubyJob, sidekiq_available

    if sidekiq_available() is not None:
        pytest.skip(sidekiq_available())
    with forkq.batch() as b:
        RubyJob.perform_async(7, "in a batch")
    assert queued(redis)[0]["bid"] == b.bid
    with open(tmp_path / "sidekiq.log", "w") as log:
        server = subprocess.Popen(
            ["sidekiq", "-r", os.path.join(RUBY_DIR, "jobs.rb"), "-c", "2", "-t", "2"],
            env=dict(os.environ, REDIS_URL=redis_url), stdout=log, stderr=subprocess.STDOUT,
            cwd=str(tmp_path))
    try:
        wait_for(lambda: redis.lrange("ruby:ran", 0, -1) == ["7:in a batch"], 40,
                 message="Ruby Sidekiq running a batch job")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
