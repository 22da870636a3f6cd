"""Flow control across real processes: a concurrent limit shared by two workers, and hard
time limits that replace the worker process (under ``forkq start`` and alone)."""

import json
import signal

import psutil
import pytest

import flow_jobs
from helpers import most_at_once, wait_for
from test_worker import log_text, spawn


def runs(redis):
    return redis.lrange("flow:runs", 0, -1)


@pytest.mark.slow
def test_a_concurrent_limit_of_two_holds_across_two_worker_processes(redis, redis_url,
                                                                     tmp_path):
    workers = [spawn(tmp_path, redis_url, f"worker{i}.log", require=["flow_jobs"],
                     concurrency=3, poll_interval=0.1) for i in range(2)]
    try:
        # Both up (a worker's first heartbeat follows its signal handlers) before any job, so
        # that the limit is shared by two processes, not met by the first one alone.
        wait_for(lambda: redis.scard("processes") == 2, timeout=30, message="both workers up")
        jids = [flow_jobs.Paired.perform_async(i) for i in range(20)]
        wait_for(lambda: len(runs(redis)) >= 20, timeout=30, message="20 runs")
        spans = [tuple(map(float, line.split()[1:]))
                 for line in redis.lrange("flow:spans", 0, -1)]
        assert sorted(runs(redis)) == sorted(jids)  # each ran once
        assert len(spans) == 20 and most_at_once(spans) <= 2
        assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0
        assert redis.get("stat:failed") is None
        logs = log_text(tmp_path, "worker0.log") + log_text(tmp_path, "worker1.log")
        assert "over limit flow-pair; again in" in logs
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        assert [worker.wait(15) for worker in workers] == [0, 0]


def retried(redis) -> dict:
    (text,) = redis.zrange("retry", 0, -1)
    return json.loads(text)


@pytest.mark.slow
@pytest.mark.parametrize("stuck", [flow_jobs.StuckInSleep, flow_jobs.StuckInRecv])
def test_a_hard_time_limit_replaces_the_child_and_requeues_its_other_jobs(
        redis, start_master, stuck):
    master = start_master(require=["flow_jobs"], processes=1, concurrency=3, timeout=1)
    (first,) = master.ready_pids()
    others = [flow_jobs.Slow.perform_async(6) for _ in range(2)]
    wait_for(lambda: redis.hlen("flow:started") == 2, message="the other jobs started")
    jid = stuck.perform_async()
    wait_for(lambda: redis.zcard("retry") == 1, timeout=10, message="the job in retry")
    job = retried(redis)
    assert job["jid"] == jid and job["error_class"] == "forkq.TimeLimitExceeded"
    assert "time_limit of 1 s" in job["error_message"] and job["retry_count"] == 0
    (second,) = wait_for(lambda: [pid for pid in master.ready_pids() if pid != first] or None,
                         timeout=15, message="a new child")
    wait_for(lambda: sorted(runs(redis)) == sorted(others), timeout=15,
             message="the other jobs requeued and run by the new child")
    assert {int(redis.hget("flow:started", other)) for other in others} == {second}
    assert not redis.lrange("queue:default", 0, -1) and redis.zcard("dead") == 0
    assert "ran past its time_limit of 1 s" in master.log()


@pytest.mark.slow
def test_a_standalone_worker_past_a_hard_limit_exits_for_its_supervisor(redis, redis_url,
                                                                        tmp_path):
    worker = spawn(tmp_path, redis_url, require=["flow_jobs"], concurrency=2, timeout=1)
    other = flow_jobs.Slow.perform_async(30)
    wait_for(lambda: redis.hlen("flow:started") == 1, message="the other job started")
    jid = flow_jobs.StuckInRecv.perform_async()
    assert worker.wait(15) == 75
    assert retried(redis)["jid"] == jid
    (requeued,) = redis.lrange("queue:default", 0, -1)
    assert json.loads(requeued)["jid"] == other
    assert not redis.keys("forkq:inflight:*")
    assert "retiring this process" in log_text(tmp_path)


@pytest.mark.slow
def test_a_hard_time_limit_forks_the_successor_at_once_and_logs_the_job_once(
        redis, start_master):
    # timeout 25: the leaving child gives its other running job RETIRE_TIMEOUT (5 s).
    master = start_master(require=["flow_jobs"], processes=1, concurrency=2, timeout=25)
    (first,) = master.ready_pids()
    other = flow_jobs.Slow.perform_async(8)
    wait_for(lambda: redis.hget("flow:started", other), message="the other job started")
    overrun = flow_jobs.Overrun.perform_async()
    wait_for(lambda: redis.zcard("retry") == 1, timeout=10, message="the job in retry")
    after = flow_jobs.Slow.perform_async(0)
    wait_for(lambda: redis.hget("flow:started", after), timeout=10, message="the next job")
    # The next job ran in the successor while the leaving child still ran the other job.
    assert int(redis.hget("flow:started", after)) != first
    assert psutil.Process(first).status() != psutil.STATUS_ZOMBIE
    assert other not in runs(redis)
    wait_for(lambda: not psutil.pid_exists(first), timeout=15, message="the leaving child gone")
    lines = [line for line in master.log().splitlines() if f"jid={overrun}" in line]
    assert [line for line in lines if "INFO: done" in line] == [], lines
    assert len([line for line in lines if "fail: forkq.TimeLimitExceeded" in line]) == 1
