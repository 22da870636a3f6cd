"""Per-class job metrics in Sidekiq 8's keys, so that either system's web UI shows both.

The layout follows Sidekiq 8.0-8.1 (``lib/sidekiq/metrics/shared.rb`` and ``tracking.rb``):

- ``j|YYMMDD|H:MM`` (one minute, TTL 8 h) and ``j|YYMMDD|H:M`` (ten minutes: the minute's
  first digit, TTL 3 days): hashes with ``<class>|p`` (jobs finished, failed ones included),
  ``<class>|f`` (failed) and ``<class>|ms`` (milliseconds run by the jobs that succeeded).
- ``h|<class>-D-H:M`` (one minute, no zero padding, TTL 8 h): a BITFIELD of 26 unsigned 16-bit
  counters (saturating), one per execution-time bucket of ``BUCKET_MS``, successful jobs only.

All times are UTC. Sidekiq 7 used other names (``j|YYYYMMDD|H:M``, ``<class>-DD-HH:M``); they
are neither written nor read here.

``JobMetrics`` runs in a worker child: processor threads call ``jobs_finished`` once per
batch of jobs (a few dict additions a job under one lock; a job alone, as the coroutine
runner ends them, 1.2-1.7 µs measured on this project's 2-core test machine), and the
heartbeat thread calls ``flush`` once per beat, which writes everything counted since the
last flush in one MULTI, stamped with the minute of the flush, as Sidekiq
does. A flush that fails puts its counts back for the next one. ``WithJobMetrics`` puts it in
front of the worker's other observer (Prometheus' ``JobObserver``, else ``NullObserver``).

The read side, which serves the web UI's Metrics pages, is ``api/jobmetrics.py``; the key
names (``minute_bucket``, ``histogram_window``) and the buckets (``BUCKET_MS``) are shared from
here.
"""

from __future__ import annotations

import datetime
import functools
import threading
from bisect import bisect_right

#: upper bounds (exclusive) of the execution-time buckets, ms; the last one is "too slow"
BUCKET_MS = (20, 30, 45, 65, 100, 150, 225, 335, 500, 750, 1100, 1700, 2500, 3800, 5750,
             8500, 13000, 20000, 30000, 45000, 65000, 100000, 150000, 225000, 335000, 1e20)
#: seconds a one-minute ``j|`` hash and a histogram live
SHORT_TTL = 8 * 3600
#: seconds a ten-minute ``j|`` hash lives
MID_TTL = 3 * 24 * 3600
#: the ceiling of a histogram counter (BITFIELD u16, OVERFLOW SAT)
COUNTER_MAX = 65535


#: ``bucket_index(ms)``: the histogram bucket of a run of ``ms`` milliseconds, the first bound
#: above it (the last bucket takes the rest); a C call, as it runs once a job
bucket_index = functools.partial(bisect_right, BUCKET_MS[:-1])


def minute_bucket(moment: datetime.datetime) -> str:
    """``YYMMDD|H:MM`` of a UTC time: the one-minute ``j|`` hash."""
    return f"{moment:%y%m%d}|{moment.hour}:{moment.minute:02d}"


def ten_minute_bucket(moment: datetime.datetime) -> str:
    """``YYMMDD|H:M`` of a UTC time, M the minute's tens digit: the ten-minute ``j|`` hash."""
    return f"{moment:%y%m%d}|{moment.hour}:{moment.minute // 10}"


def histogram_window(moment: datetime.datetime) -> str:
    """``D-H:M`` of a UTC time, unpadded: the minute of a histogram key."""
    return f"{moment.day}-{moment.hour}:{moment.minute}"


def utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)


class _ClassCounts:
    """What one class did since the last flush."""

    __slots__ = ("processed", "failed", "ms", "buckets")

    def __init__(self) -> None:
        self.processed = 0
        self.failed = 0
        self.ms = 0
        self.buckets = [0] * len(BUCKET_MS)

    def add(self, other: "_ClassCounts") -> None:
        self.processed += other.processed
        self.failed += other.failed
        self.ms += other.ms
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets)]


class JobMetrics:
    """The per-class counts of one worker child, an observer of the processors' jobs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, _ClassCounts] = {}

    def job_finished(self, queue: str, class_name: str, seconds: float, failed: bool) -> None:
        self.jobs_finished([(queue, class_name, seconds, failed)])

    def jobs_finished(self, ended: list[tuple[str, str, float, bool]]) -> None:
        """Count jobs that ended, each ``(queue, class_name, seconds, failed)``."""
        # Like Sidekiq, time is kept for successful jobs only: failures end at random points.
        with self._lock:
            found = self._counts
            for _, class_name, seconds, failed in ended:
                counts = found.get(class_name)
                if counts is None:
                    counts = found[class_name] = _ClassCounts()
                counts.processed += 1
                if failed:
                    counts.failed += 1
                else:
                    ms = int(seconds * 1000)
                    counts.ms += ms
                    counts.buckets[bucket_index(ms)] += 1

    def take(self) -> dict[str, _ClassCounts]:
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def give_back(self, counts: dict[str, _ClassCounts]) -> None:
        with self._lock:
            for name, taken in counts.items():
                self._counts.setdefault(name, _ClassCounts()).add(taken)

    def flush(self, redis, keys, now: float) -> int:
        """Write the counts since the last flush in one MULTI; returns the classes written.

        On a Redis error the counts are kept for the next flush and the error is raised; a
        connection lost after Redis ran the MULTI therefore counts that flush twice (metrics
        only, and rarer than losing them on every failed flush)."""
        counts = self.take()
        if not counts:
            return 0
        try:
            write_counts(redis, keys, counts, utc(now))
        except Exception:
            self.give_back(counts)
            raise
        return len(counts)


def write_counts(redis, keys, counts: dict[str, _ClassCounts],
                 moment: datetime.datetime) -> None:
    """One MULTI: the histograms of ``moment``'s minute, then both ``j|`` rollups."""
    pipe = redis.pipeline(transaction=True)
    window = histogram_window(moment)
    for name, each in counts.items():
        increments = [("INCRBY", "u16", f"#{index}", min(n, COUNTER_MAX))
                      for index, n in enumerate(each.buckets) if n]
        if increments:
            key = keys.job_histogram(name, window)
            pipe.execute_command("BITFIELD", key, "OVERFLOW", "SAT",
                                 *[part for step in increments for part in step])
            pipe.expire(key, SHORT_TTL)
    for bucket, ttl in ((ten_minute_bucket(moment), MID_TTL), (minute_bucket(moment), SHORT_TTL)):
        key = keys.job_metrics(bucket)
        for name, each in counts.items():
            pipe.hincrby(key, f"{name}|p", each.processed)
            if each.failed:
                pipe.hincrby(key, f"{name}|f", each.failed)
            if each.ms:
                pipe.hincrby(key, f"{name}|ms", each.ms)
        pipe.expire(key, ttl)
    pipe.execute()


class WithJobMetrics:
    """An observer that also counts each finished job in ``job_metrics``; every other event
    goes to ``observer`` alone."""

    def __init__(self, job_metrics: JobMetrics, observer) -> None:
        self.job_metrics = job_metrics
        self.observer = observer

    def job_finished(self, queue: str, class_name: str, seconds: float, failed: bool) -> None:
        self.job_metrics.job_finished(queue, class_name, seconds, failed)
        self.observer.job_finished(queue, class_name, seconds, failed)

    def jobs_finished(self, ended: list[tuple[str, str, float, bool]]) -> None:
        self.job_metrics.jobs_finished(ended)
        self.observer.jobs_finished(ended)

    def jobs_recovered(self, count: int) -> None:
        self.observer.jobs_recovered(count)

    def job_poisoned(self) -> None:
        self.observer.job_poisoned()

    def job_rescheduled(self, queue: str, limiter: str) -> None:
        self.observer.job_rescheduled(queue, limiter)

    def job_expired(self, queue: str) -> None:
        self.observer.job_expired(queue)

    def close(self) -> None:
        self.observer.close()
