"""Compatibility with Ruby Sidekiq 6.4 (Debian's ruby-sidekiq), both ways, through one Redis.

Skipped, with the reason printed, where Ruby or the sidekiq gem is not installed; .ci/run
installs them.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import forkq
import jobs
from forkq.worker.retry import encode_backtrace
from helpers import wait_for

RUBY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ruby")


def sidekiq_available() -> str | None:
    if not shutil.which("ruby") or not shutil.which("sidekiq"):
        return "ruby and the sidekiq gem are not installed (apt-get install ruby-sidekiq)"
    probe = subprocess.run(["ruby", "-e", "require 'sidekiq'"], capture_output=True)
    return None if probe.returncode == 0 else "the sidekiq gem does not load"


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sidekiq_available() is not None, reason=str(sidekiq_available()))]


class RubyJob(forkq.Job):
    """Enqueued from Python, run by Ruby: forkq only needs its wire name."""

    name = "RubyJob"


def ruby(script, redis_url, **kwargs):
    env = dict(os.environ, REDIS_URL=redis_url)
    return subprocess.run(["ruby", os.path.join(RUBY_DIR, script)], env=env, capture_output=True,
                          text=True, timeout=60, **kwargs)


def test_jobs_pushed_by_ruby_run_in_forkq(redis, redis_url, start_worker):
    result = ruby("push.rb", redis_url)
    assert result.returncode == 0, result.stderr
    start_worker()
    wait_for(lambda: sorted(redis.lrange("ran", 0, -1)) == ["1:from ruby", "2:scheduled"], timeout=15)


def test_jobs_pushed_by_forkq_run_in_ruby_sidekiq(redis, redis_url, tmp_path):
    RubyJob.perform_async(7, "from python")
    RubyJob.perform_in(0.5, 8, "scheduled")
    log = open(tmp_path / "sidekiq.log", "w")
    server = subprocess.Popen(["sidekiq", "-r", os.path.join(RUBY_DIR, "jobs.rb"), "-c", "2", "-t", "2"],
                              env=dict(os.environ, REDIS_URL=redis_url), stdout=log,
                              stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        wait_for(lambda: sorted(redis.lrange("ruby:ran", 0, -1)) == ["7:from python", "8:scheduled"],
                 timeout=40, message="Ruby Sidekiq running forkq's jobs")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def test_ruby_api_reads_forkq_processes_queues_sets_and_work(redis, redis_url, start_worker):
    jobs.gate.clear()
    worker = start_worker(tag="compat")
    try:
        running = jobs.wait_for_gate.perform_async("held")
        wait_for(lambda: redis.hget(worker.services.identity, "busy") == "1")
        waiting = jobs.Record.set(queue="waiting").perform_async("queued")
        redis.zadd("retry", {json.dumps({"class": "jobs.Record", "args": [1], "jid": "r" * 24,
                                         "queue": "default", "retry_count": 0, "error_class": "ValueError",
                                         "error_message": "boom", "failed_at": time.time(),
                                         "error_backtrace": encode_backtrace(["a.py:1", "b.py:2"])}):
                            time.time() + 3600})
        redis.zadd("dead", {json.dumps({"class": "X", "args": [], "jid": "d" * 24, "queue": "default",
                                        "error_message": "dead"}): time.time()})
        worker.heartbeat.beat()
        result = ruby("api.rb", redis_url)
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout)
    finally:
        jobs.gate.set()
    (process,) = seen["processes"]
    assert process["identity"] == worker.services.identity and process["busy"] == 1
    assert process["tag"] == "compat" and process["queues"] == ["default"] and process["quiet"] is False
    assert {"name": "waiting", "size": 1} == {k: v for k, v in seen["queues"][-1].items() if k != "latency"}
    assert 0 <= seen["queues"][-1]["latency"] < 60
    assert [j["jid"] for j in seen["retries"]] == ["r" * 24]
    assert seen["retries"][0]["backtrace"] == ["a.py:1", "b.py:2"]
    assert [j["jid"] for j in seen["dead"]] == ["d" * 24]
    assert seen["workers"] == [{"queue": "default", "jid": running, "run_at": seen["workers"][0]["run_at"]}]
    assert seen["stats"]["retry_size"] == 1 and seen["stats"]["dead_size"] == 1
    assert waiting and seen["stats"]["enqueued"] == 1
