"""A worker as its own process: real signals, kill -9, Redis going away, config errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis as redis_py

from forkq.connection.embedded import EmbeddedRedis
from helpers import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


def spawn(tmp_path, redis_url, log_name="worker.log", **settings):
    values = {"redis_url": redis_url, "require": ["jobs"], "concurrency": 2, "poll_interval": 0.2,
              "heartbeat_interval": 0.3, "heartbeat_ttl": 2, "timeout": 2,
              "data_dir": str(tmp_path / "data")}
    values.update(settings)
    path = tmp_path / "forkq.yml"
    path.write_text(json.dumps(values))
    log = open(tmp_path / log_name, "w")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]))
    env.pop("REDIS_URL", None)
    return subprocess.Popen([sys.executable, "-m", "forkq.worker", "-c", str(path)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path))


def stop_all(workers, timeout):
    """Teardown: TERM every worker, then wait for each; one still running after the timeout is
    killed and the test fails naming it, so that no worker outlives the test."""
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    stuck = []
    for worker in workers:
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            stuck.append(worker.pid)
    assert not stuck, f"worker(s) {stuck} still running {timeout} s after TERM: killed"


@pytest.fixture
def restartable_redis(tmp_path):
    """An embedded server of the test's own, which the test stops and starts again; the
    process current at teardown is stopped even when the test or its own cleanup failed."""
    server = EmbeddedRedis(str(tmp_path / "redis"))
    try:
        yield server.start()
    finally:
        server.stop()


def log_text(tmp_path, name="worker.log"):
    return (tmp_path / name).read_text()


def enqueue_slow(redis, value, seconds):
    redis.lpush("queue:default", json.dumps({"class": "jobs.slow", "args": [value, seconds],
                                             "jid": value.ljust(24, "0"), "queue": "default",
                                             "retry": True}))


@pytest.mark.slow
def test_term_requeues_jobs_running_past_the_timeout_and_exits_0(redis, redis_url, tmp_path):
    worker = spawn(tmp_path, redis_url)
    enqueue_slow(redis, "long", 60)
    wait_for(lambda: redis.lrange("started", 0, -1) == ["long"], timeout=15)
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert time.monotonic() - started < 2 + 3
    (text,) = redis.lrange("queue:default", 0, -1)
    assert json.loads(text)["args"] == ["long", 60]
    assert not redis.keys("forkq:inflight:*") and not redis.smembers("processes")
    assert "pushed back to their queues" in log_text(tmp_path)


@pytest.mark.slow
@pytest.mark.fault
def test_kill_9_mid_job_is_recovered_by_the_next_worker(redis, redis_url, tmp_path):
    first = spawn(tmp_path, redis_url, "first.log")
    enqueue_slow(redis, "victim", 60)
    wait_for(lambda: redis.lrange("started", 0, -1) == ["victim"], timeout=15)
    first.kill()
    first.wait()
    assert redis.llen("queue:default") == 0 and len(redis.keys("forkq:inflight:*")) == 1
    redis.delete("started")
    second = spawn(tmp_path, redis_url, "second.log", timeout=1)
    try:
        wait_for(lambda: redis.lrange("started", 0, -1) == ["victim"], timeout=20,
                 message="the killed worker's job restarted after its heartbeat expired")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)
    assert "whose heartbeat expired" in log_text(tmp_path, "second.log")


@pytest.mark.slow
@pytest.mark.fault
def test_redis_restart_is_logged_once_and_no_job_is_lost(tmp_path, restartable_redis):
    server = restartable_redis
    client = redis_py.Redis.from_url(server.url, decode_responses=True)
    worker = spawn(tmp_path, server.url)
    try:
        client.lpush("queue:default", *[json.dumps({"class": "jobs.Record", "args": [i], "jid": f"{i:024d}",
                                                     "queue": "default"}) for i in range(50)])
        wait_for(lambda: client.llen("ran") == 50, timeout=15)
        server.stop()
        wait_for(lambda: "Redis unavailable" in log_text(tmp_path), timeout=15)
        server.start()
        client = redis_py.Redis.from_url(server.url, decode_responses=True)
        client.lpush("queue:default", *[json.dumps({"class": "jobs.Record", "args": [i], "jid": f"{i:024d}",
                                                     "queue": "default"}) for i in range(50, 100)])
        wait_for(lambda: client.llen("ran") == 100, timeout=30)
        wait_for(lambda: "Redis is back after" in log_text(tmp_path), timeout=10)
        assert sorted(map(int, client.lrange("ran", 0, -1))) == list(range(100))
        assert log_text(tmp_path).count("Redis unavailable") == 1
    finally:
        stop_all([worker], 15)


@pytest.mark.slow
def test_maxmemory_policy_warning(redis, redis_url, tmp_path):
    redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        worker = spawn(tmp_path, redis_url)
        wait_for(lambda: "started:" in log_text(tmp_path), timeout=15)
        worker.send_signal(signal.SIGTERM)
        worker.wait(15)
    finally:
        redis.config_set("maxmemory-policy", "noeviction")
    assert "maxmemory-policy is 'allkeys-lru'" in log_text(tmp_path)


@pytest.mark.slow
def test_bad_config_and_bad_require_stop_startup_with_a_clear_message(redis_url, tmp_path):
    worker = spawn(tmp_path, redis_url, concurrency="lots")
    assert worker.wait(15) == 1
    assert "key 'concurrency' has invalid value 'lots'" in log_text(tmp_path)
    worker = spawn(tmp_path, redis_url, require=["no_such_module_here"])
    assert worker.wait(15) == 1
    assert "require: could not import 'no_such_module_here'" in log_text(tmp_path)


@pytest.mark.slow
def test_embedded_redis_is_started_found_by_clients_and_stopped(tmp_path):
    config = tmp_path / "forkq.yml"
    data = tmp_path / "data"
    config.write_text(json.dumps({"require": ["jobs"], "data_dir": str(data), "concurrency": 1}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]))
    env.pop("REDIS_URL", None)
    worker = subprocess.Popen([sys.executable, "-m", "forkq.worker", "-c", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        from forkq.connection import embedded
        wait_for(lambda: embedded.is_running(str(data)), timeout=15)
        script = ("import forkq, jobs; forkq.configure(data_dir=%r); jobs.Record.perform_async('e')"
                  % str(data))
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=30)
        client = redis_py.Redis(unix_socket_path=str(data / "redis.sock"), decode_responses=True)
        wait_for(lambda: client.lrange("ran", 0, -1) == ["e"], timeout=15)
        assert (data / "appendonly.aof").exists() or (data / "appendonlydir").exists()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
    assert not embedded.is_running(str(data))


def test_a_stop_signal_while_the_embedded_redis_starts_stops_it(tmp_path, monkeypatch):
    from forkq.signals import Interrupted

    server = EmbeddedRedis(str(tmp_path / "data"))
    started = []

    def interrupted_wait():  # TERM while the new server is waited for, as the handler raises it
        started.append(server.process)
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(server, "_wait_until_ready", interrupted_wait)
    with pytest.raises(Interrupted):
        server.start()
    (process,) = started
    stopped = process.poll() is not None
    if not stopped:
        process.kill()
        process.wait()
    assert stopped and server.process is None


class Parent:
    """A worker's parent that asks it to stop once it has run ``max_jobs`` jobs."""

    def __init__(self, max_jobs):
        self.max_jobs = max_jobs
        self.states = []
        self.retirements = 0

    def tick(self, state):
        self.states.append(state)
        return "max_jobs" if state.jobs_done >= self.max_jobs else None

    def request_retirement(self):
        self.retirements += 1


def test_a_parent_told_each_tick_stops_the_worker_with_its_reason(redis, make_config):
    import threading

    import jobs
    from forkq.worker import Worker

    config = make_config(concurrency=2, heartbeat_interval=0.2, poll_interval=0.1)
    parent = Parent(max_jobs=2)
    worker = Worker(config, config.redis_url, "test:9:0", parent)
    worker.start()
    exit_status = []
    thread = threading.Thread(target=lambda: exit_status.append(worker.run()), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: parent.states)[0].concurrency == 2
        jobs.Record.perform_bulk([["a"], ["b"]])
        thread.join(15)
    finally:
        if thread.is_alive():
            worker.request_stop("test teardown")
            thread.join(15)
    assert exit_status == [0] and worker.stop_reason == "max_jobs"
    assert sorted(redis.lrange("ran", 0, -1)) == ["a", "b"]
    assert [s.stopping for s in parent.states][-1] is False and parent.retirements == 0
    worker.retire("a test")
    assert parent.retirements == 1


EDGE_JOBS = '''
from forkq import Job, client


class Fails(Job):
    def perform(self, n):
        raise ValueError(f"fails {n}")
'''


@pytest.mark.slow
def test_jobs_redis_refuses_for_their_data_stop_no_real_worker(redis, start_master):
    """A ``forkq start`` child with five threads, five jobs whose result Redis cannot store,
    five failing jobs while ``retry`` is a list, and 200 good jobs: every good job runs, the
    failing ones are dead with the reason, and no thread is held (once, none of the 200 ran)."""
    from forkq.client import new_jid

    def raw(job_class, **fields):
        return json.dumps({"class": job_class, "args": [1], "jid": new_jid(), "queue": "default",
                           "retry": True, **fields})

    redis.lpush("retry", "x")
    redis.lpush("queue:default", *[raw("e2e_jobs.Record", result_ttl=1e300) for _ in range(5)],
                *[raw("edge_jobs.Fails") for _ in range(5)])
    redis.lpush("queue:default", *[raw("e2e_jobs.Record") for _ in range(200)])
    master = start_master(processes=1, concurrency=5, require=["e2e_jobs", "edge_jobs"],
                          modules={"edge_jobs": EDGE_JOBS})
    wait_for(lambda: redis.hlen("e2e:runs") == 205 and redis.zcard("dead") == 5, 60)
    assert all(int(n) == 1 for n in redis.hvals("e2e:runs"))
    dead = [json.loads(text) for text in redis.zrange("dead", 0, -1)]
    assert all("[not retried: Redis refused its retry: WRONGTYPE" in job["error_message"]
               for job in dead)
    wait_for(lambda: "retry cannot be polled" in master.log(), 10)
    assert "poller error" not in master.log()
