"""Per-class job metrics in Sidekiq 8's keys, checked against Sidekiq 8.1.7's own reading.

``SidekiqQuery`` below re-implements, from ``lib/sidekiq/metrics/query.rb`` and
``lib/sidekiq/metrics/shared.rb`` of Sidekiq v8.1.7, how Sidekiq's web UI reads the keys:
``Query#top_jobs`` (minutely and hourly rollups), ``Query#for_job`` and ``Histogram#fetch``,
``JobResult#total_avg``. forkq's writer must give it the expected numbers, and forkq's reader
must read a fixture written as Sidekiq's ``ExecutionTracker#flush`` writes.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections import defaultdict

import pytest
import redis as redis_py

import forkq
import sidekiq_fixtures
from forkq import jobmetrics
from forkq.api import jobmetrics as metrics_read
from forkq.jobmetrics import JobMetrics
from forkq.keys import Keys
from forkq.worker import Worker
from helpers import wait_for

#: Sidekiq 8.1.7 shared.rb Histogram::BUCKET_INTERVALS, restated
SIDEKIQ_BUCKETS = [20, 30, 45, 65, 100, 150, 225, 335, 500, 750, 1100, 1700, 2500, 3800, 5750,
                   8500, 13000, 20000, 30000, 45000, 65000, 100000, 150000, 225000, 335000, 1e20]
FIXTURE_NOW = 1764331200  # 2025-11-28 12:00:00 UTC


class SidekiqQuery:
    """Sidekiq 8.1.7's Metrics::Query, reduced to the numbers its Metrics pages show."""

    def __init__(self, redis, now: float) -> None:
        self.redis = redis
        self.time = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)

    def top_jobs(self, minutes: int | None = None, hours: int | None = None) -> dict:
        if hours:
            stride, count = 600, hours * 6
            key_of = lambda t: t.strftime("j|%y%m%d|%-H:") + ("0" if t.minute < 10 else str(t.minute)[0])  # noqa: E731
        else:
            stride, count = 60, minutes or 60
            key_of = lambda t: t.strftime("j|%y%m%d|%-H:%M")  # noqa: E731
        totals = defaultdict(lambda: defaultdict(int))
        moment = self.time
        for _ in range(count):
            for field, value in self.redis.hgetall(key_of(moment)).items():
                klass, metric = field.split("|")[:2]
                totals[klass][metric] += int(value)
            moment -= datetime.timedelta(seconds=stride)
        return totals

    def histogram(self, klass: str, minutes: int = 60) -> list[int]:
        """``for_job``'s per-minute ``Histogram#fetch`` (slowest bucket first), summed."""
        summed = [0] * 26
        moment = self.time
        gets = [p for i in range(26) for p in ("GET", "u16", f"#{i}")]
        for _ in range(minutes):
            key = "h|" + klass + "-" + moment.strftime("%-d-%-H:%-M")
            counts = list(reversed(self.redis.execute_command("BITFIELD_RO", key, *gets)))
            summed = [a + b for a, b in zip(summed, counts)]
            moment -= datetime.timedelta(seconds=60)
        return summed

    @staticmethod
    def total_avg(totals: dict) -> float:
        completed = totals["p"] - totals["f"]
        return 0 if completed == 0 else totals["ms"] / completed


def sidekiq_bucket(ms: float) -> int:
    """Histogram#record_time: the first interval the time is below."""
    return next(i for i, bound in enumerate(SIDEKIQ_BUCKETS) if ms < bound)


@pytest.mark.parametrize("ms", [0, 1, 19, 20, 29, 30, 280, 334, 335, 499, 500, 2999, 3000,
                                334999, 335000, 10 ** 9])
def test_bucket_of_a_run_time_is_sidekiqs(ms):
    assert jobmetrics.bucket_index(ms) == sidekiq_bucket(ms)
    assert list(jobmetrics.BUCKET_MS) == SIDEKIQ_BUCKETS


@pytest.mark.parametrize("moment, minute, ten, window", [
    ((2025, 2, 14, 8, 43, 7), "250214|8:43", "250214|8:4", "14-8:43"),   # tracking.rb's example
    ((2025, 11, 28, 11, 5, 59), "251128|11:05", "251128|11:0", "28-11:5"),
    ((2026, 1, 1, 0, 0, 0), "260101|0:00", "260101|0:0", "1-0:0"),
])
def test_key_names_are_sidekiqs(moment, minute, ten, window):
    at = datetime.datetime(*moment, tzinfo=datetime.timezone.utc)
    assert jobmetrics.minute_bucket(at) == minute == at.strftime("%y%m%d|%-H:%M")
    assert jobmetrics.ten_minute_bucket(at) == ten == at.strftime("%y%m%d|%-H:%M")[:-1]
    assert jobmetrics.histogram_window(at) == window == at.strftime("%-d-%-H:%-M")


def test_flushed_counts_read_back_as_sidekiq_reads_them(redis):
    metrics = JobMetrics()
    for seconds in (0.4, 0.4, 0.6, 3.0):
        metrics.job_finished("default", "ChargeJob", seconds, False)
    metrics.job_finished("default", "ChargeJob", 9.0, True)  # failures carry no time
    metrics.job_finished("mail", "MailerJob", 0.03, False)
    now = time.time()
    assert metrics.flush(redis, Keys(), now) == 2
    assert metrics.flush(redis, Keys(), now) == 0  # nothing new: no writes
    query = SidekiqQuery(redis, now)
    for totals in (query.top_jobs(minutes=1), query.top_jobs(hours=1)):
        assert dict(totals["ChargeJob"]) == {"p": 5, "f": 1, "ms": 4400}
        assert dict(totals["MailerJob"]) == {"p": 1, "ms": 30}
        assert query.total_avg(totals["ChargeJob"]) == 1100
    histogram = list(reversed(query.histogram("ChargeJob", minutes=1)))
    assert histogram[sidekiq_bucket(400)] == 2 and histogram[sidekiq_bucket(600)] == 1
    assert histogram[sidekiq_bucket(3000)] == 1 and sum(histogram) == 4
    at = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    ttl = {key: redis.ttl(key) for key in redis.keys("[jh]|*")}
    assert ttl == {f"j|{at:%y%m%d}|{at.hour}:{at.minute:02d}": 8 * 3600,
                   f"j|{at:%y%m%d}|{at.hour}:{at.minute // 10}": 3 * 24 * 3600,
                   f"h|ChargeJob-{at.day}-{at.hour}:{at.minute}": 8 * 3600,
                   f"h|MailerJob-{at.day}-{at.hour}:{at.minute}": 8 * 3600}


def test_sidekiq_8_metrics_read_by_forkq(redis):
    sidekiq_fixtures.load(redis, "sidekiq-8.1.7-metrics")
    charge, mailer = metrics_read.top_jobs(redis, Keys(), FIXTURE_NOW, 60)
    assert (charge.name, charge.total_processed, charge.total_failed) == ("ChargeJob", 16, 2)
    assert charge.total_seconds == 9.5 and charge.average_ms == pytest.approx(9500 / 14)
    assert charge.processed[-3:] == [6, 10, 0] and charge.minutes[-1] == FIXTURE_NOW
    assert (mailer.name, mailer.total_processed, mailer.average_ms) == ("MailerJob", 3, 30)
    detail = metrics_read.for_job(redis, Keys(), "ChargeJob", FIXTURE_NOW, 60)
    assert detail.total_processed == 16 and sum(detail.histogram) == 14
    assert [detail.percentile_ms(p) for p in (50, 95, 99)] == [750, 3800, 3800]
    assert metrics_read.top_jobs(redis, Keys(), FIXTURE_NOW, 60, substring="mail")[0].name == "MailerJob"
    assert metrics_read.for_job(redis, Keys(), "NoSuchJob", FIXTURE_NOW, 60).percentile_ms(50) is None


def test_a_failed_flush_keeps_its_counts_for_the_next(redis, redis_server):
    metrics = JobMetrics()
    metrics.job_finished("default", "ChargeJob", 0.1, False)
    dead = redis_py.Redis(port=1, socket_connect_timeout=0.5)
    with pytest.raises(redis_py.ConnectionError):
        metrics.flush(dead, Keys(), time.time())
    metrics.job_finished("default", "ChargeJob", 0.2, True)
    now = time.time()
    metrics.flush(redis, Keys(), now)
    assert dict(SidekiqQuery(redis, now).top_jobs(minutes=1)["ChargeJob"]) == {"p": 2, "f": 1, "ms": 100}


def test_namespace_prefixes_the_keys(redis):
    metrics = JobMetrics()
    metrics.job_finished("default", "A", 0.05, False)
    metrics.flush(redis, Keys("app"), time.time())
    assert {key.split("|")[0] for key in redis.keys("*")} == {"app:j", "app:h"}


class CountedJob(forkq.Job):
    name = "CountedJob"

    def perform(self, fail):
        if fail:
            raise ValueError("told to fail")


def test_a_worker_flushes_its_jobs_on_each_beat(redis, make_config):
    config = make_config(heartbeat_interval=0.2, concurrency=2, max_retries=0)
    worker = Worker(config, config.redis_url, "test:metrics:0")
    worker.start()
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        for fail in (False, False, True):
            CountedJob.perform_async(fail)
        query = SidekiqQuery(redis, time.time())
        wait_for(lambda: query.top_jobs(minutes=2)["CountedJob"]["p"] == 3, timeout=10)
        assert query.top_jobs(minutes=2)["CountedJob"]["f"] == 1
        assert sum(query.histogram("CountedJob", minutes=2)) == 2
    finally:
        import signal
        worker.signals.push(signal.SIGTERM)
        runner.join(30)


def test_the_last_counts_are_written_when_the_heartbeat_stops(redis, start_worker):
    worker = start_worker(heartbeat_interval=30)
    worker.heartbeat.job_metrics.job_finished("default", "LastJob", 0.25, False)
    worker.heartbeat.stop()
    totals = SidekiqQuery(redis, time.time()).top_jobs(minutes=2)["LastJob"]
    assert dict(totals) == {"p": 1, "ms": 250}
