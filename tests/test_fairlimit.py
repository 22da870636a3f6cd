"""The per-tenant concurrency cap ``fair_limit`` (``flow/fairlimit.py``): the option, the fetch
skipping a tenant at its limit, the counts given back by every way a job ends, and real
workers (two processes, kill -9 recovery)."""

import json
import os
import signal

import pytest

import priority_jobs
from forkq import api
from forkq.flow import fairlimit
from forkq.keys import Keys
from forkq.worker.fetch import FetchMode
from forkq.worker.recovery import Recovery
from forkq.worker.services import Services
from helpers import most_at_once, wait_for
from test_priority import drain, fetcher
from test_worker import spawn, stop_all

Record, Span = priority_jobs.Record, priority_jobs.Span


def running(redis):
    return fairlimit.running(redis, Keys(), "default")


def fair_fetcher(redis_url, mode=FetchMode.RELIABLE, lists=None):
    take = fetcher(redis_url, mode) if lists is None else fetcher_on(redis_url, mode, lists)
    take.placement.update((), {"default"})
    return take


def fetcher_on(redis_url, mode, lists):
    take = fetcher(redis_url, mode)
    take.lists = lists
    return take


@pytest.mark.parametrize("bad", [0, -1, 10_001, 1.5, "2", True])
def test_a_bad_fair_limit_is_refused_naming_the_option(redis, bad):
    with pytest.raises(TypeError, match=r"option 'fair_limit' must be a whole number from 1 "
                                        r"to 10000 \(jobs of one tenant running at once\)"):
        Record.set(fair_key="t", fair_limit=bad).perform_async("x")
    with pytest.raises(TypeError, match="option 'fair_limit'"):
        type("Bad", (priority_jobs.forkq.Job,), {"options": {"fair_limit": bad},
                                                 "perform": lambda self: None})
    assert api.Queue("default").size == 0


def test_a_fair_limit_without_a_fair_key_is_refused(redis):
    with pytest.raises(TypeError, match="option 'fair_limit' caps the jobs of one tenant and "
                                        "needs a 'fair_key'"):
        Record.set(fair_limit=2).perform_async("x")
    assert api.Queue("default").size == 0


def test_the_payload_carries_the_limit(redis):
    Record.set(fair_key="t", fair_limit=3).perform_bulk([["a"], ["b"]])
    Record.set(fair_key="t", fair_limit=3).perform_async("c")
    texts = redis.lrange("forkq:tenant:default,t", 0, -1)
    assert [json.loads(text)["fair_limit"] for text in texts] == [3, 3, 3]


@pytest.mark.parametrize("mode", [FetchMode.RELIABLE, FetchMode.BASIC])
def test_a_tenant_at_its_limit_is_skipped_and_keeps_its_turn(redis, redis_url, mode):
    Record.set(fair_key="a", fair_limit=2).perform_bulk([[f"a{i}"] for i in range(4)])
    Record.set(fair_key="b").perform_bulk([[f"b{i}"] for i in range(4)])
    one = fair_fetcher(redis_url, mode)
    two = fair_fetcher(redis_url, mode, ("forkq:inflight:t:1", "forkq:inflight:t:1:alt"))
    three = fair_fetcher(redis_url, mode, ("forkq:inflight:t:2", "forkq:inflight:t:2:alt"))
    held = [json.loads(j.text)["args"][0] for take in (one, two, three) for j in take.fetch()]
    assert held == ["a0", "b0", "a1"] and running(redis) == {"a": 2}
    # a is at its limit: a fourth thread's fetch serves b only, a keeps the oldest turn
    four = fair_fetcher(redis_url, mode, ("forkq:inflight:t:3", "forkq:inflight:t:3:alt"))
    four.batch = 4
    assert labels(four.fetch()) == ["b1", "b2", "b3"]
    assert redis.zrange("forkq:turns:default", 0, -1) == ["a"]
    one.batch = 4
    assert labels(one.fetch()) == ["a2"]  # a0 acknowledged: room for one, a3 waits
    assert running(redis) == {"a": 2}
    assert labels(three.fetch()) == ["a3"]  # a1 acknowledged
    for take in (one, three):
        take.fetch()
    assert running(redis) == {} and api.Queue("default").size == 0


def labels(jobs):
    return [json.loads(job.text)["args"][0] for job in jobs]


def test_a_lone_limited_tenant_takes_no_more_than_its_limit_in_one_batch(redis, redis_url):
    Record.set(fair_key="a", fair_limit=3).perform_bulk([[f"a{i}"] for i in range(10)])
    take = fair_fetcher(redis_url)
    take.batch = 10
    assert len(take.fetch()) == 3 and running(redis) == {"a": 3}


@pytest.mark.parametrize("limited, found", [(fairlimit.LOOK_AHEAD + 1, True),
                                             (fairlimit.LOOK_AHEAD + 2, False)])
def test_the_look_ahead_passes_over_so_many_tenants_at_their_limit(redis, redis_url, limited,
                                                                   found):
    for i in range(limited):
        Record.set(fair_key=f"t{i}", fair_limit=1).perform_bulk([[f"t{i}-0"], [f"t{i}-1"]])
    Record.set(fair_key="z").perform_async("z-0")
    holders = [fair_fetcher(redis_url, lists=(f"forkq:inflight:h:{i}", f"forkq:inflight:h:{i}:a"))
               for i in range(limited + 1)]
    assert sorted(label for h in holders[:limited] for label in labels(h.fetch())) == \
        sorted(f"t{i}-0" for i in range(limited))
    redis.zadd("forkq:turns:default", {"z": 10**9})  # z's turn after every limited tenant's
    assert labels(holders[limited].fetch()) == (["z-0"] if found else [])


def test_a_release_gives_back_all_but_the_kept_job(redis, redis_url):
    Record.set(fair_key="a", fair_limit=5).perform_bulk([[f"a{i}"] for i in range(3)])
    take = fair_fetcher(redis_url)
    jobs = take.fetch()
    take.batch = 2
    jobs = take.fetch()  # a0 acknowledged
    assert labels(jobs) == ["a1", "a2"] and running(redis) == {"a": 2}
    take.release(jobs[1:], keep=jobs[0])
    assert running(redis) == {"a": 1} and api.Queue("default").size == 1
    take.release([jobs[0]])
    assert running(redis) == {} and api.Queue("default").size == 2


def spans(redis):
    """(label, start, end) of every ``Span`` that ended."""
    return [(label, float(start), float(end)) for label, start, end in
            (line.split() for line in redis.lrange("prio:spans", 0, -1))]


@pytest.mark.slow
def test_two_processes_run_at_most_the_limit_of_a_tenant_while_others_proceed(redis, redis_url,
                                                                              tmp_path):
    Span.set(fair_key="A", fair_limit=2).perform_bulk([[f"A{i}"] for i in range(10)])
    Span.set(fair_key="B").perform_bulk([[f"B{i}"] for i in range(10)])
    workers = [spawn(tmp_path, redis_url, f"w{i}.log", require=["priority_jobs"], concurrency=3)
               for i in range(2)]
    try:
        wait_for(lambda: len(spans(redis)) == 20, timeout=30, message="every job ended")
        wait_for(lambda: running(redis) == {}, timeout=5, message="A's count back to 0")
    finally:
        stop_all(workers, 15)
    ended = spans(redis)
    a = [(start, end) for label, start, end in ended if label.startswith("A")]
    b = [(start, end) for label, start, end in ended if label.startswith("B")]
    assert most_at_once(a) == 2, a
    # B is not held back by A's limit: it runs on the threads A may not use
    assert most_at_once(b) >= 3 and max(e for _, e in b) < max(e for _, e in a)


@pytest.mark.slow
def test_a_failed_job_gives_back_its_count_and_waits_for_its_retry(redis, redis_url, tmp_path):
    Span.set(fair_key="A", fair_limit=1).perform_async("A0", 0.1, True)
    worker = spawn(tmp_path, redis_url, require=["priority_jobs"], concurrency=1)
    try:
        wait_for(lambda: api.RetrySet().size == 1, timeout=15, message="the job in retry")
        wait_for(lambda: running(redis) == {}, timeout=5, message="A's count back to 0")
    finally:
        stop_all([worker], 15)


@pytest.mark.slow
@pytest.mark.fault
def test_kill_9_of_a_worker_gives_back_the_counts_of_the_jobs_recovered(redis, start_master):
    master = start_master(require=["priority_jobs"], processes=1, concurrency=2)
    (child,) = master.ready_pids()
    Span.set(fair_key="A", fair_limit=2).perform_bulk([["A0", 60], ["A1", 60], ["A2", 60]])
    wait_for(lambda: running(redis) == {"A": 2}, timeout=15, message="two of A's jobs held")
    api.Queue("default").pause()
    os.kill(child, signal.SIGKILL)
    # the replacement recovers the slot at boot: both jobs back in A's list, counts given back
    wait_for(lambda: redis.llen("forkq:tenant:default,A") == 3, timeout=20,
             message="the killed worker's jobs back in their tenant's list")
    wait_for(lambda: running(redis) == {}, timeout=5, message="A's count back to 0")
    assert not [key for key in redis.keys("forkq:inflight:*:fair")]


@pytest.mark.slow
@pytest.mark.fault
def test_a_master_killed_whole_has_its_counts_given_back_by_another_hosts_recovery(
        redis, redis_url, start_master, tmp_path):
    master = start_master(require=["priority_jobs"], processes=1, concurrency=2)
    (child,) = master.ready_pids()
    Span.set(fair_key="A", fair_limit=2).perform_bulk([["A0", 60], ["A1", 60]])
    wait_for(lambda: running(redis) == {"A": 2}, timeout=15, message="two of A's jobs held")
    api.Queue("default").pause()
    master.send(signal.SIGKILL)
    os.kill(child, signal.SIGKILL)
    # another process (another slot) finds the heartbeat expired and recovers the lists
    other = spawn(tmp_path, redis_url, require=["priority_jobs"], concurrency=1)
    try:
        wait_for(lambda: redis.llen("forkq:tenant:default,A") == 2, timeout=20,
                 message="the dead master's jobs back in their tenant's list")
        wait_for(lambda: running(redis) == {}, timeout=5, message="A's count back to 0")
    finally:
        stop_all([other], 15)


def test_counts_go_back_after_the_process_stops_knowing_of_any_tenant(redis, redis_url):
    Record.set(fair_key="a", fair_limit=2).perform_async("a0")
    take = fair_fetcher(redis_url)
    assert labels(take.fetch()) == ["a0"] and running(redis) == {"a": 1}
    take.placement.update((), ())  # the queue was cleared and left forkq:fair
    assert take.fetch() == [] and running(redis) == {}


def test_a_clean_stop_gives_back_what_its_slots_records_still_hold(redis, make_config):
    config = make_config(concurrency=2)
    recovery = Recovery(Services.build(config, config.redis_url, "host:1:0"), death_handlers=[])
    recovery.claim_slot()
    redis.hset("forkq:inflight:host:1:0:1:alt:fair", "default,a", 2)
    redis.hset("forkq:fair-running:default", mapping={"a": 3, "b": 1})  # 1 of a's elsewhere
    assert recovery.release_slot()
    assert running(redis) == {"a": 1, "b": 1}
    assert not redis.exists("forkq:inflight:host:1:0:1:alt:fair")
