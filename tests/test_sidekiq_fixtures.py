"""forkq reads what Sidekiq 7.x and 8.x write, from fixtures that follow Sidekiq's source.

No Sidekiq 7 or 8 runtime is installed here: ``tests/fixtures/sidekiq-<version>.json`` hold
Redis contents as those versions write them, each key naming the source file it follows
(``lib/sidekiq/client.rb``, ``job_retry.rb``, ``launcher.rb``, ``processor.rb``). They are
loaded into the real Redis and read through the API, the web UI, ``forkqctl status --json``,
the Prometheus exporter and a worker that runs and retries the jobs.
"""

from __future__ import annotations

import json
import time

import pytest

import forkq
import sidekiq_fixtures
from forkq import ctl
from forkq.api import Api
from forkq.metrics.collector import RedisReader
from forkq.web.app import App
from helpers import wait_for
from test_web import Browser

NOW = 1764331200  # the fixtures' "now": 2025-11-28 12:00:00 UTC
BACKTRACE = ["app/jobs/charge_job.rb:12:in `perform`",
             "lib/sidekiq/processor.rb:220:in `execute_job`"]


class ChargeJob(forkq.Job):
    """The Ruby side's ChargeJob, as a forkq job: euros fail."""

    name = "ChargeJob"

    def perform(self, amount, currency):
        if currency == "eur":
            raise RuntimeError(f"no euros for {amount}")
        forkq.client.default().redis.rpush("charged", f"{amount}:{currency}")


@pytest.fixture
def api(redis):
    return Api(redis)


def test_jobs_with_millisecond_timestamps_read_as_dates(redis, api):
    sidekiq_fixtures.load(redis, "sidekiq-8.1.7")
    (job,) = api.queue("default").jobs()
    assert job.jid == "0a1b2c3d4e5f60718293a4b5" and job.args == [42, "usd"]
    assert job.created_at == pytest.approx(1764331140.123)
    assert job.enqueued_at == pytest.approx(1764331140.456)
    assert api.queue("default").latency == pytest.approx(time.time() - 1764331140.456, abs=2)
    (scheduled,) = api.scheduled.page()
    assert scheduled.score == 1764334800.5 and scheduled.created_at == 1764331000.0
    first, again = api.retries.page()
    assert first.failed_at == 1764331100.0 and first.retried_at is None
    assert first.retry_count == 0 and first.backtrace == BACKTRACE
    assert again.failed_at == 1764320001.0 and again.retried_at == pytest.approx(1764330000.5)
    (dead,) = api.dead.page()
    assert dead.failed_at == 1764300001.0 and dead.retried_at == 1764329999.0
    assert dead.error_class == "RuntimeError" and dead.backtrace == BACKTRACE


def test_float_second_timestamps_of_sidekiq_7_still_read(redis, api):
    sidekiq_fixtures.load(redis, "sidekiq-7.3.10")
    (job,) = api.queue("default").jobs()
    assert job.created_at == 1764331100.25 and job.enqueued_at == 1764331150.5
    (retry,) = api.retries.page()
    assert retry.failed_at == 1764331100.75


@pytest.mark.parametrize("version, concurrency, queues, quiet", [
    ("8.1.7", 8, ["critical", "default", "serial"], False),  # top-level field only
    ("8.0.9", 6, ["default", "serial"], True),               # info only, plus capsules
    ("7.3.10", 5, ["default", "low"], False),                # info only
])
def test_process_hashes_of_each_version(redis, api, version, concurrency, queues, quiet):
    sidekiq_fixtures.load(redis, f"sidekiq-{version}")
    (process,) = api.processes()
    assert process.concurrency == concurrency and process.queues == queues
    assert process.quiet is quiet and process.version == version
    # no forkq coroutines field: every busy job counts against the threads, as before
    assert process.coroutines is None and process.threads_busy == process.busy
    assert process.problem is None


def test_queues_come_from_capsules_when_info_has_none(redis, api):
    info = {"hostname": "h", "pid": 1, "identity": "h:1:aa",
            "capsules": {"default": {"concurrency": 3, "mode": "weighted",
                                     "weights": {"a": 2, "b": 1}},
                         "single": {"concurrency": 1, "mode": "strict", "weights": {"b": 0, "c": 0}}}}
    redis.sadd("processes", "h:1:aa")
    redis.hset("h:1:aa", mapping={"info": json.dumps(info), "busy": 0})
    (process,) = api.processes()
    assert process.queues == ["a", "b", "c"] and process.concurrency == 4


def test_work_entries_of_sidekiq_7_and_8(redis, api):
    sidekiq_fixtures.load(redis, "sidekiq-8.1.7")
    sidekiq_fixtures.load(redis, "sidekiq-7.3.10")
    works = api.workers()
    assert [(w.identity, w.run_at, w.job.jid) for w in works] == [
        ("rb7:99:abcdefabcdef", 1764331182.0, "9" * 24),
        ("rb-host:4242:0a1b2c3d4e5f", 1764331190.0, "4" * 24)]
    assert works[1].job.enqueued_at == 1764331185.0 and works[1].queue == "default"


def test_web_pages_show_sidekiq_8_data(redis, make_config):
    sidekiq_fixtures.load(redis, "sidekiq-8.1.7")
    browser = Browser(App(make_config(), redis, environ={}))
    busy = browser.get("/busy")
    assert busy.status == 200 and "1 / 8" in busy.text
    assert 'title="2025-11-28 11:59:50 UTC"' in busy.text  # the :work entry's run_at
    assert 'title="2025-11-28 11:00:00 UTC"' in busy.text  # info.started_at
    queue = browser.get("/queues/default")
    assert queue.status == 200 and 'title="2025-11-28 11:59:00 UTC"' in queue.text
    retries = browser.get("/retries")
    assert retries.status == 200 and "card declined" in retries.text
    entry = browser.get("/retries/" + Api(redis).retries.find("1" * 24).key)
    assert entry.status == 200 and 'title="2025-11-28 11:58:20 UTC"' in entry.text
    assert "charge_job.rb:12" in entry.text
    for page in (busy, queue, retries, entry):
        assert "not a date" not in page.text


def test_forkqctl_status_json_reads_sidekiq_8_processes(redis, redis_url, tmp_path, capsys):
    sidekiq_fixtures.load(redis, "sidekiq-8.1.7")
    sidekiq_fixtures.load(redis, "sidekiq-8.0.9")
    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: {redis_url}\ndata_dir: {tmp_path / 'data'}\n")
    assert ctl.main(["status", "-c", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_host = {p["hostname"]: p for p in report["processes"]}
    assert by_host["rb-host"]["concurrency"] == 8 and by_host["rb-old"]["concurrency"] == 6
    assert by_host["rb-host"]["queues"] == ["critical", "default", "serial"]
    assert report["totals"]["threads"] == 14 and report["totals"]["retries"] == 2
    latency = {q["name"]: q["latency"] for q in report["queues"]}
    assert latency["default"] == pytest.approx(time.time() - 1764331140.456, abs=5)


def test_exporter_reads_sidekiq_8_latency_and_concurrency(redis, make_config):
    sidekiq_fixtures.load(redis, "sidekiq-8.1.7")
    facts = RedisReader(make_config()).read()
    size, wait = facts.queues["critical"]
    assert size == 1 and wait == pytest.approx(time.time() - 1764331199.0, abs=5)


def test_a_worker_runs_and_retries_sidekiq_8_jobs(redis, api, start_worker):
    fixture = sidekiq_fixtures.load(redis, "sidekiq-8.1.7")
    failing = next(j for j in sidekiq_fixtures.jobs(fixture, "retry") if j["retry_count"] == 2)
    redis.lpush("queue:default", sidekiq_fixtures.ruby_json(failing))
    start_worker(queues=["default"])
    wait_for(lambda: redis.lrange("charged", 0, -1) == ["42:usd"])
    wait_for(lambda: api.retries.find(failing["jid"]) is not None
             and api.retries.find(failing["jid"]).retry_count == 3)
    retried = api.retries.find(failing["jid"])
    assert retried.field("failed_at") == 1764320001000  # the first failure, as Sidekiq wrote it
    assert retried.failed_at == 1764320001.0
    assert retried.retried_at == pytest.approx(time.time(), abs=30)
    assert retried.error_message == "no euros for 8"


def test_work_payload_as_an_object_and_run_at_in_milliseconds(redis, api):
    """Sidekiq 6.0-6.1 (``processor.rb`` ``payload: job_hash``) nested the payload as an object;
    no 7.x or 8.x release does, nor writes ``run_at`` in ms, but either reads."""
    identity = "old:1:aa"
    redis.sadd("processes", identity)
    redis.hset(identity, mapping={"info": json.dumps({"hostname": "old", "concurrency": 2}),
                                  "busy": 1})
    redis.hset(f"{identity}:work", "t1", json.dumps(
        {"queue": "q", "run_at": 1764331190500,
         "payload": {"class": "OldJob", "args": [1], "jid": "5" * 24, "enqueued_at": 1764331100.5}}))
    (work,) = api.workers()
    assert work.run_at == 1764331190.5 and work.job.jid == "5" * 24
    assert work.job.enqueued_at == 1764331100.5 and work.queue == "q"
