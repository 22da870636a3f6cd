"""The read side of the per-class job metrics: what Sidekiq 8's ``Metrics::Query`` reads.

Serves the web UI's Metrics pages, in whatever process reads. The writer and the key layout
are ``forkq/jobmetrics.py`` (it runs in the worker); this reads the same keys: one pipeline of
HGETALL (or HMGET) per minute, and BITFIELD_RO for the histograms, so a ``+@read`` user will do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..jobmetrics import BUCKET_MS, histogram_window, minute_bucket, utc
from .entry import wire

#: periods the Metrics pages offer, in minutes (the one-minute hashes live 8 hours)
PERIODS = {"1h": 60, "2h": 120, "4h": 240, "8h": 480}


@dataclass
class ClassMetrics:
    """One class over a period: per-minute series, oldest first, and its histogram."""

    name: str
    minutes: list[float]
    processed: list[int]
    failed: list[int]
    ms: list[int]
    #: execution-time counts per bucket of ``BUCKET_MS``, summed over the period
    histogram: list[int] = field(default_factory=lambda: [0] * len(BUCKET_MS))

    @property
    def total_processed(self) -> int:
        return sum(self.processed)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)

    @property
    def total_seconds(self) -> float:
        return sum(self.ms) / 1000.0

    @property
    def average_ms(self) -> float:
        """Mean run time of the jobs that succeeded (failures carry no time)."""
        succeeded = self.total_processed - self.total_failed
        return sum(self.ms) / succeeded if succeeded > 0 else 0.0

    def percentile_ms(self, percent: float) -> float | None:
        """The bucket bound under which ``percent`` % of the timed runs fall (None: no runs;
        ``math.inf``: the "slow" bucket, over 335 s)."""
        total = sum(self.histogram)
        if total == 0:
            return None
        wanted, seen = total * percent / 100.0, 0
        for bound, count in zip(BUCKET_MS, self.histogram):
            seen += count
            if seen >= wanted:
                return math.inf if bound == BUCKET_MS[-1] else float(bound)
        return math.inf


def minute_starts(now: float, minutes: int) -> list[float]:
    """Epoch seconds of the last ``minutes`` minutes' starts, oldest first, ``now``'s last."""
    current = now - now % 60
    return [current - 60 * back for back in range(minutes - 1, -1, -1)]


def top_jobs(redis, keys, now: float, minutes: int = 60, substring: str = "") -> list[ClassMetrics]:
    """Every class seen in the last ``minutes`` one-minute hashes, busiest first."""
    starts = minute_starts(now, minutes)
    pipe = redis.pipeline(transaction=False)
    for start in starts:
        pipe.hgetall(keys.job_metrics(minute_bucket(utc(start))))
    found: dict[str, ClassMetrics] = {}
    for index, fields in enumerate(pipe.execute()):
        for field_name, value in fields.items():
            name, _, metric = field_name.rpartition("|")
            if not name or metric not in ("p", "f", "ms"):
                continue
            if substring and substring.lower() not in name.lower():
                continue
            metrics = found.get(name) or found.setdefault(name, _empty(name, starts))
            _series(metrics, metric)[index] += _count(value)
    return sorted(found.values(), key=lambda m: (-m.total_processed, m.name))


def for_job(redis, keys, name: str, now: float, minutes: int = 60) -> ClassMetrics:
    """One class's counts and histogram over the last ``minutes`` minutes."""
    starts = minute_starts(now, minutes)
    pipe = redis.pipeline(transaction=False)
    for start in starts:
        pipe.hmget(keys.job_metrics(minute_bucket(utc(start))), wire(f"{name}|p"),
                   wire(f"{name}|f"), wire(f"{name}|ms"))
    metrics = _empty(name, starts)
    for index, (processed, failed, ms) in enumerate(pipe.execute()):
        metrics.processed[index] = _count(processed)
        metrics.failed[index] = _count(failed)
        metrics.ms[index] = _count(ms)
    add_histograms(redis, keys, [metrics])
    return metrics


def add_histograms(redis, keys, classes: list[ClassMetrics]) -> None:
    """Sum each class's one-minute histograms into ``histogram``: only the minutes in which it
    succeeded are read, since a flush writes a class's counts and histogram together."""
    pipe = redis.pipeline(transaction=False)
    timed = [[start for start, done, failed in zip(m.minutes, m.processed, m.failed)
              if done > failed] for m in classes]
    for metrics, starts in zip(classes, timed):
        for start in starts:
            key = keys.job_histogram(metrics.name, histogram_window(utc(start)))
            pipe.execute_command("BITFIELD_RO", wire(key), *_HISTOGRAM_GETS)
    replies = iter(pipe.execute())
    for metrics, starts in zip(classes, timed):
        totals = [0] * len(BUCKET_MS)
        for _ in starts:
            counts = list(next(replies) or []) + [0] * len(BUCKET_MS)
            totals = [a + _count(b) for a, b in zip(totals, counts)]
        metrics.histogram = totals


#: BITFIELD_RO arguments that read every bucket's counter of one histogram
_HISTOGRAM_GETS = [part for index in range(len(BUCKET_MS)) for part in ("GET", "u16", f"#{index}")]


def _empty(name: str, starts: list[float]) -> ClassMetrics:
    size = len(starts)
    return ClassMetrics(name, list(starts), [0] * size, [0] * size, [0] * size)


def _series(metrics: ClassMetrics, metric: str) -> list[int]:
    return {"p": metrics.processed, "f": metrics.failed, "ms": metrics.ms}[metric]


def _count(value) -> int:
    """A counter another writer stored: anything that is not an integer counts 0."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0
