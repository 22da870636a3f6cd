"""Coroutine jobs on a worker's event loop, on a real Redis: in-process workers, then real
``forkq start`` children killed and stopped with real signals."""

import json
import os
import signal

import pytest

import forkq
from async_jobs import Blocker, Flaky, Nap, double
from forkq import api
from helpers import LogLines, wait_for
from masters import inflight_keys


def stats():
    return api.default().stats()


def runs(redis):
    return {jid: int(count) for jid, count in redis.hgetall("async:runs").items()}


def test_coroutine_jobs_wait_together_on_one_thread(redis, start_worker):
    jids = [Nap.perform_async(2.0) for _ in range(20)]
    jids.append(double.perform_async(21))
    worker = start_worker(concurrency=1, async_concurrency=50)
    wait_for(lambda: worker.snapshot().busy >= 10, 5, message="coroutine jobs running together")
    identity = worker.services.identity
    wait_for(lambda: redis.hlen(f"{identity}:work") >= 10, 5, message="busy entries")
    entry = json.loads(next(iter(redis.hgetall(f"{identity}:work").values())))
    assert json.loads(entry["payload"])["class"] == "async_jobs.Nap"
    wait_for(lambda: len(runs(redis)) == 21, 10, message="every coroutine job finished")
    assert int(redis.get("async:peak")) >= 10
    # the stat counters are flushed with the next acknowledgement, a moment after the last run
    wait_for(lambda: stats()['processed'] == 21, 5, message="every coroutine job counted")

    def counted():  # per-class metrics (Sidekiq 8's keys, flushed by the heartbeat): each job
        # counts in a one-minute and in a ten-minute hash
        return sum(int(redis.hget(key, "async_jobs.Nap|p") or 0) for key in redis.keys("j|*")
                   if redis.type(key) == "hash")
    wait_for(lambda: counted() == 2 * 20, 5, message="coroutine jobs in the job metrics")
    assert api.Queue("default").size == 0 and inflight_keys(redis) == []


@pytest.mark.parametrize("fetch", ["reliable", "basic"])
def test_async_concurrency_bounds_the_jobs_running_at_once(redis, start_worker, fetch):
    for _ in range(9):
        Nap.perform_async(0.2)
    start_worker(concurrency=2, async_concurrency=3, fetch=fetch)
    wait_for(lambda: len(runs(redis)) == 9, 10, message="every coroutine job finished")
    assert int(redis.get("async:peak")) == 3


def test_a_thread_fetches_no_job_while_the_loop_is_full(redis, start_worker):
    # One job runs and two wait for it (two hand-over slots per thread): the thread whose
    # batches handed them over waits for room before its next fetch, holding nothing, and the
    # other seven stay in the queue for any process to run.
    for _ in range(10):
        Nap.perform_async(30.0)
    worker = start_worker(concurrency=1, async_concurrency=1, timeout=0.5)
    runner = worker.manager.coroutines
    wait_for(lambda: runner.slots.free == 0 and runner.slots._waiting == 1, 10,
             message="the thread waiting for room")
    assert api.Queue("default").size == 7
    assert [key for key in inflight_keys(redis) if not key.endswith(":async")] == []
    assert redis.llen(worker.services.keys.inflight_async(worker.services.slot)) == 3


def test_a_thread_quieted_while_it_waits_for_room_fetches_nothing_more(redis, start_worker):
    for _ in range(10):
        Nap.perform_async(30.0)
    worker = start_worker(concurrency=1, async_concurrency=1, timeout=0.5)
    runner, [processor] = worker.manager.coroutines, worker.manager.processors
    wait_for(lambda: runner.slots._waiting == 1, 10, message="the thread waiting for room")
    fetches = []
    fetch = processor.fetcher.fetch
    processor.fetcher.fetch = lambda: fetches.append(1) or fetch()
    worker.signals.push(signal.SIGTSTP)
    wait_for(lambda: not processor.is_alive(), 10, message="the quieted thread's end")
    assert fetches == [] and api.Queue("default").size == 7


def test_a_failing_coroutine_job_is_retried_and_keeps_its_result(redis, start_worker):
    jid = Flaky.set(result_ttl=60).perform_async("v")
    start_worker(concurrency=1)
    result = wait_for(lambda: (r := forkq.result(jid)) and r.status == "succeeded" and r,
                      10, message="the retry succeeded")
    assert result.value == "v" and result.attempts == 2
    assert [e["message"] for e in result.errors] == ["first run of v"]
    assert (stats()['failed'], stats()['processed']) == (1, 2)


def test_server_middleware_wraps_a_coroutine_job(redis, start_worker):
    seen = []

    def middleware(job, payload, queue, call_next):
        if payload["args"] == [5]:
            call_next()  # does not return call_next()'s coroutine: forkq awaits it all the same
            return
        seen.append(("before", payload["class"]))
        coroutine = call_next()

        async def after():
            value = await coroutine
            seen.append(("after", value))
            return value

        return after()

    chain = forkq.client.default().middleware
    chain.add_server(middleware)
    try:
        wrapped = double.set(result_ttl=60).perform_async(4)
        forgotten = double.set(result_ttl=60).perform_async(5)
        start_worker(concurrency=1)
        wait_for(lambda: all((r := forkq.result(jid)) and r.status == "succeeded"
                             for jid in (wrapped, forgotten)), 10)
    finally:
        chain.server.remove(middleware)
    assert (forkq.result(wrapped).value, forkq.result(forgotten).value) == (8, 10)
    assert seen == [("before", "async_jobs.double"), ("after", 8)]


def test_a_blocking_call_in_a_coroutine_job_is_reported_once(redis, start_worker):
    with LogLines() as lines:
        jid = Blocker.perform_async(1.0)
        start_worker(concurrency=1)
        wait_for(lambda: runs(redis).get(jid), 10, message="the blocking job finished")
    stalls = [line for line in lines if "event loop stalled" in line]
    assert len(stalls) == 1 and f"class=async_jobs.Blocker jid={jid}" in stalls[0]


@pytest.mark.slow
@pytest.mark.fault
def test_kill_9_of_a_worker_running_coroutine_jobs_loses_none(start_master, redis):
    master = start_master(processes=1, concurrency=2, require=["async_jobs"])
    old = master.ready_pids(1)[0]
    jids = [Nap.perform_async(30) for _ in range(15)]
    wait_for(lambda: redis.hlen("async:started") == 15, 10, message="all 15 running")
    assert redis.llen(next(k for k in redis.keys("forkq:inflight:*:async"))) == 15
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: [p for p in master.ready_pids(1) if p != old], 15, message="replacement")
    wait_for(lambda: all(int(redis.hget("async:started", jid) or 0) == 2 for jid in jids),
             10, message="every coroutine job recovered and started again")
    assert "recovered 15 job(s) left by this slot's previous process" in master.log()


@pytest.mark.slow
@pytest.mark.fault
def test_term_pushes_back_coroutine_jobs_running_past_the_deadline(start_master, redis):
    master = start_master(processes=1, concurrency=2, timeout=1, require=["async_jobs"])
    master.ready_pids(1)
    quick = Nap.perform_async(0.3)
    slow = [Nap.perform_async(30) for _ in range(5)]
    wait_for(lambda: redis.hlen("async:started") == 6, 10, message="all running")
    master.send(signal.SIGTERM)
    assert master.wait_exit(20) == 0
    assert runs(redis) == {quick: 1}
    queued = [json.loads(text)["jid"] for text in redis.lrange("queue:default", 0, -1)]
    assert sorted(queued) == sorted(slow) and inflight_keys(redis) == []
    assert "5 coroutine job(s) cancelled and pushed back" in master.log()


# --- flow control for coroutine jobs: unique locks, time limits, limiters ---------------------

def test_a_unique_coroutine_job_holds_its_lock_while_running_and_frees_it_after(redis,
                                                                                start_worker):
    from async_jobs import UniqueNap

    jid = UniqueNap.perform_async("k")
    assert UniqueNap.perform_async("k") is None
    start_worker(concurrency=1)
    wait_for(lambda: runs(redis) == {jid: 1}, 10, message="the unique job ran")
    assert redis.lrange("async:lock_while_running", 0, -1) == ["held"]
    wait_for(lambda: not redis.keys("forkq:unique:*"), 5, message="lock released after success")


def test_a_coroutine_job_past_its_time_limit_is_cancelled_and_fails_with_the_reason(
        redis, start_worker):
    from async_jobs import Overrun

    jid = Overrun.perform_async()
    start_worker(concurrency=1)
    wait_for(lambda: redis.zcard("dead") == 1, 10, message="the overrunning job died")
    (dead,) = [json.loads(text) for text in redis.zrange("dead", 0, -1)]
    assert dead["jid"] == jid and dead["error_class"] == "forkq.TimeLimitExceeded"
    assert "time_limit of 0.3 s" in dead["error_message"]
    assert redis.lrange("async:cleaned_up", 0, -1) == [jid]


def test_an_over_limit_coroutine_job_is_rescheduled_not_failed(redis, start_worker):
    from async_jobs import WindowedNap

    start_worker(concurrency=1, poll_interval=0.1)
    WindowedNap.perform_async(1), WindowedNap.perform_async(2)
    wait_for(lambda: redis.llen("async:windowed") == 2, 10, message="both ran, in two windows")
    times = sorted(float(entry.split()[1]) for entry in redis.lrange("async:windowed", 0, -1))
    assert int(times[1] // 2) == int(times[0] // 2) + 1
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0
    wait_for(lambda: stats()["processed"] == 2, 5, message="two jobs counted, not three")
    assert stats()["failed"] == 0


@pytest.mark.slow
def test_async_with_a_concurrent_limit_of_one_holds_across_two_worker_processes(start_master,
                                                                                 redis):
    from async_jobs import Single
    from test_flow_processes import most_at_once

    master = start_master(processes=2, concurrency=1, poll_interval=0.1, require=["async_jobs"])
    jids = [Single.perform_async() for _ in range(6)]
    wait_for(lambda: redis.llen("async:single") == 6, 30, message="six runs")
    runs = [line.split() for line in redis.lrange("async:single", 0, -1)]
    assert sorted(jid for jid, *_ in runs) == sorted(jids)  # each ran once
    assert {holders for *_, holders in runs} == {"1"}
    assert most_at_once([(float(start), float(end)) for _, start, end, _ in runs]) == 1
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0
    wait_for(lambda: stats()["processed"] == 6, 5, message="six jobs counted, no more")
    assert stats()["failed"] == 0
    assert "over limit async-single; again in" in master.log()


def _runner_on_dead_redis(make_config):
    """A coroutine runner whose Redis is gone (nothing listens on the port)."""
    import dataclasses
    import socket

    import redis as redis_py

    from forkq.worker.coroutines import CoroutineRunner
    from forkq.worker.services import Services

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = make_config(async_concurrency=2, concurrency=1)

    class Unreachable(Services):
        def make_redis(self):
            return redis_py.Redis(port=port, socket_connect_timeout=0.2)

    built = Services.build(config, f"redis://127.0.0.1:{port}", "t:1:0")
    services = Unreachable(**{f.name: getattr(built, f.name) for f in dataclasses.fields(built)})
    return CoroutineRunner(services=services)


def test_stop_gives_up_on_redis_at_the_deadline_instead_of_hanging(make_config):
    import threading
    import time

    from forkq.worker.coroutines import Running
    from forkq.worker.fetch import Fetched

    runner = _runner_on_dead_redis(make_config)
    runner._ensure_started()
    job = Running(Fetched("default", '{"class":"X","args":[],"jid":"j1"}'),
                  {"class": "X", "args": [], "jid": "j1"}, object, False,
                  runner.list_for("default"))
    job.ending = (0.0, None, None)
    runner.running[job.ident] = job
    runner.finished.put(job)
    stopper = threading.Thread(target=runner.stop, args=(time.monotonic() + 0.3,), daemon=True)
    stopper.start()
    stopper.join(10)
    assert not stopper.is_alive(), "stop() hung while Redis was away"
    runner.finisher.join(5)
    assert not runner.finisher.is_alive()


def test_a_coroutine_job_whose_end_cannot_be_recorded_goes_to_the_dead_set(
        redis, start_worker, monkeypatch):
    from forkq.worker.coroutines import CoroutineRunner

    def broken(self, redis_, flow, job, ended):
        raise ValueError("cannot record")

    monkeypatch.setattr(CoroutineRunner, "_record", broken)
    jid = Nap.perform_async(0.0)
    worker = start_worker(concurrency=1)
    wait_for(lambda: redis.zcard("dead") == 1, 10, message="the job buried")
    dead = json.loads(redis.zrange("dead", 0, -1)[0])
    assert "cannot record" in dead["error_message"]
    assert json.loads(dead["raw"])["jid"] == jid
    wait_for(lambda: stats()['failed'] == 1, 5, message="counted as failed")
    assert worker.snapshot().jobs_done == 1
    assert api.Queue("default").size == 0 and inflight_keys(redis) == []


def test_postponed_coroutine_jobs_are_not_counted_as_done(redis, start_worker, monkeypatch):
    from forkq.worker.coroutines import CoroutineRunner

    monkeypatch.setattr(CoroutineRunner, "_record", lambda self, redis_, flow, job, ended: "postponed")
    Nap.perform_async(0.0)
    worker = start_worker(concurrency=1)
    wait_for(lambda: redis.hlen("async:runs") == 1, 10, message="the job ran")
    wait_for(lambda: not worker.manager.coroutines.running, 5, message="acknowledged")
    assert worker.snapshot().jobs_done == 0


def _live_runner(make_config, redis_url):
    from forkq.worker.coroutines import CoroutineRunner
    from forkq.worker.services import Services

    return CoroutineRunner(services=Services.build(
        make_config(async_concurrency=4, concurrency=1), redis_url, "t:1:0"))


def _hand_over(runner, redis, private, count, attempt=lambda write: write(), seconds=0.0):
    """Put ``count`` Nap jobs in the ``private`` list and hand each to ``runner``, as a
    processor thread does with the jobs of its batch (its writes going through ``attempt``)."""
    from forkq.worker.fetch import Fetched

    payloads = [{"class": Nap.wire_name(), "args": [seconds], "jid": f"j{i}", "queue": "default"}
                for i in range(count)]
    texts = [json.dumps(payload) for payload in payloads]
    redis.rpush(private, *texts)
    connection = runner.services.make_redis()
    for text, payload in zip(texts, payloads):
        runner.hand_over(Fetched("default", text), payload, Nap, redis=connection,
                         private_key=private, attempt=attempt, abandoned=lambda: False)
    return texts


def test_a_threads_coroutine_jobs_move_to_the_loop_together_when_it_flushes(
        redis, redis_url, make_config):
    import threading
    import time

    runner = _live_runner(make_config, redis_url)
    texts = _hand_over(runner, redis, "private:t", 3)
    assert redis.lrange("private:t", 0, -1) == texts, "set aside, still the thread's"
    assert redis.hgetall("async:started") == {}
    runner.flush(threading.get_ident())
    assert redis.llen("private:t") == 0
    wait_for(lambda: len(redis.hgetall("async:started")) == 3, 10, message="all three ran")
    wait_for(lambda: redis.llen(runner.list_for("default")) == 0, 10, message="all acknowledged")
    assert runner.stop(time.monotonic() + 5) == 0


def test_jobs_set_aside_are_taken_back_with_their_slots(redis, redis_url, make_config):
    import threading
    import time

    runner = _live_runner(make_config, redis_url)
    texts = _hand_over(runner, redis, "private:t", 2)
    taken = runner.take_pending(threading.get_ident())
    assert [fetched.text for fetched in taken] == texts
    assert runner.slots.free == 4 + 2 * 1, "their slots freed"
    runner.flush(threading.get_ident())  # nothing left to move
    assert redis.lrange("private:t", 0, -1) == texts
    assert redis.llen(runner.list_for("default")) == 0
    assert runner.stop(time.monotonic() + 1) == 0


def test_a_job_that_ends_before_its_move_is_acknowledged_only_once_it_moved(
        redis, redis_url, make_config):
    import threading
    import time

    runner = _live_runner(make_config, redis_url)

    def slow_move(write):
        """The move's reply comes after the job ended (it started at the flush)."""
        wait_for(lambda: all(job.ended for job in runner.running.values()), 10,
                 message="the job ended before its move")
        return write()

    _hand_over(runner, redis, "private:t", 1, attempt=slow_move)
    runner.flush(threading.get_ident())
    assert redis.hgetall("async:started") == {"j0": "1"}
    assert redis.llen("private:t") == 0
    wait_for(lambda: not runner.running, 10, message="its end written")
    assert redis.llen(runner.list_for("default")) == 0, "acknowledged after it moved"
    assert stats()["processed"] == 1
    assert runner.stop(time.monotonic() + 1) == 0


def test_a_thread_waiting_for_a_slot_is_woken_once_a_refill_is_free():
    import threading

    from forkq.worker.coroutines import Slots

    slots = Slots(2, refill=2)
    assert slots.take() and slots.take() and not slots.take()
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(slots.wait(60)))
    waiter.start()
    wait_for(lambda: slots._waiting == 1, 10, message="the thread waits")
    slots.give()
    slots.give()
    waiter.join(10)
    assert taken == [True] and slots.free == 1, "woken long before its 60 s"
    assert slots.take() and not slots.wait(0.01), "none free: it gives up at its timeout"
    slots.give()
    assert slots.wait(0.01), "fewer than a refill free: taken after the timeout"


def test_a_job_cancelled_before_its_task_first_ran_still_ends_as_cancelled(
        redis, redis_url, make_config):
    import threading
    import time

    runner = _live_runner(make_config, redis_url)
    _hand_over(runner, redis, "private:t", 1)
    held = threading.Event()
    runner.loop.call_soon_threadsafe(held.wait, 10)  # the loop takes both calls in one turn
    runner.flush(threading.get_ident())
    runner.cancel_if_running({"j0"})
    held.set()
    wait_for(lambda: not runner.running, 10, message="its end written")
    assert runner.slots.free == 4 + 2 * 1, "its slot freed"
    assert redis.get(runner.services.keys.cancelled) == "1", "written as cancelled"
    assert redis.llen(runner.list_for("default")) == 0
    assert runner.stop(time.monotonic() + 1) == 0


def test_a_thread_abandoned_while_its_move_is_on_its_way_loses_no_job(
        redis, redis_url, make_config):
    import threading
    import time

    from forkq.worker.fetch import release

    runner = _live_runner(make_config, redis_url)
    ident = threading.get_ident()
    taken = []

    def abandoned_mid_move(write):
        """The manager abandons the thread at the shutdown deadline while the move is on its
        way: it puts back what it takes from the thread and clears the thread's list."""
        taken.extend(runner.take_pending(ident))
        release(redis, runner.services.keys, "private:t", taken, None, True)
        return write()

    texts = _hand_over(runner, redis, "private:t", 1, attempt=abandoned_mid_move, seconds=30)
    runner.flush(ident)
    assert [fetched.text for fetched in taken] == texts, "the manager took the moving job back"
    wait_for(lambda: redis.hgetall("async:started") == {"j0": "1"}, 10, message="it started")
    assert runner.stop(time.monotonic() + 0.5) == 0, "not in the loop's list: not pushed twice"
    assert redis.lrange("queue:default", 0, -1) == texts, "back in its queue, once"
    assert redis.llen("private:t") == 0 and redis.llen(runner.list_for("default")) == 0
