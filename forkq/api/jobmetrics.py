"""The read side of the per-class job metrics: what Sidekiq 8's ``Metrics::Query`` reads.

Serves the web UI's Metrics pages, in whatever process reads. The writer and the key layout
are ``forkq/jobmetrics.py`` (it runs in the worker); this reads the same keys: one pipeline of
HGETALL (or HMGET) per minute, and BITFIELD_RO for the histograms, so a ``+@read`` user will do.

A counter that is no count (text, a 400-digit number: ``records.count``) or a key of another
type counts 0 and is named in the class's ``problem`` (``bad`` says how many there were), so
one bad record shows as such instead of taking the Metrics pages down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..jobmetrics import BUCKET_MS, histogram_window, minute_bucket, utc
from .entry import wire
from .records import count, wrong_type

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
    #: the first counter or key that could not be read, and how many could not
    problem: str | None = None
    bad: int = 0

    def count(self, value, what: str) -> int:
        """A counter of this class as stored; a bad one counts 0 and is remembered."""
        number, problem = count(value, what)
        if problem:
            self.note(problem)
        return number

    def note(self, problem: str) -> None:
        self.problem, self.bad = self.problem or problem, self.bad + 1

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
    for index, fields in enumerate(pipe.execute(raise_on_error=False)):
        # A key of another type (a producer's mistake) holds no counts: nothing to show.
        for field_name, value in (() if wrong_type(fields) else fields.items()):
            name, _, metric = field_name.rpartition("|")
            if not name or metric not in ("p", "f", "ms"):
                continue
            if substring and substring.lower() not in name.lower():
                continue
            metrics = found.get(name) or found.setdefault(name, _empty(name, starts))
            _series(metrics, metric)[index] += metrics.count(value, field_name)
    return sorted(found.values(), key=lambda m: (-m.total_processed, m.name))


def for_job(redis, keys, name: str, now: float, minutes: int = 60) -> ClassMetrics:
    """One class's counts and histogram over the last ``minutes`` minutes."""
    starts = minute_starts(now, minutes)
    pipe = redis.pipeline(transaction=False)
    for start in starts:
        pipe.hmget(keys.job_metrics(minute_bucket(utc(start))), wire(f"{name}|p"),
                   wire(f"{name}|f"), wire(f"{name}|ms"))
    metrics = _empty(name, starts)
    for index, reply in enumerate(pipe.execute(raise_on_error=False)):
        if wrong_type(reply):
            metrics.note(f"a minute's key holds another type ({reply})")
            continue
        processed, failed, ms = reply
        metrics.processed[index] = metrics.count(processed, f"{name}|p")
        metrics.failed[index] = metrics.count(failed, f"{name}|f")
        metrics.ms[index] = metrics.count(ms, f"{name}|ms")
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
    replies = iter(pipe.execute(raise_on_error=False))
    for metrics, starts in zip(classes, timed):
        totals = [0] * len(BUCKET_MS)
        for _ in starts:
            reply = next(replies)
            if wrong_type(reply):
                metrics.note(f"a histogram key holds another type ({reply})")
                continue
            counts = list(reply or []) + [0] * len(BUCKET_MS)
            totals = [a + metrics.count(b, "histogram") for a, b in zip(totals, counts)]
        metrics.histogram = totals


#: BITFIELD_RO arguments that read every bucket's counter of one histogram
_HISTOGRAM_GETS = [part for index in range(len(BUCKET_MS)) for part in ("GET", "u16", f"#{index}")]


def _empty(name: str, starts: list[float]) -> ClassMetrics:
    size = len(starts)
    return ClassMetrics(name, list(starts), [0] * size, [0] * size, [0] * size)


def _series(metrics: ClassMetrics, metric: str) -> list[int]:
    return {"p": metrics.processed, "f": metrics.failed, "ms": metrics.ms}[metric]

