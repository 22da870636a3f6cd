"""Periodic-job series, read at each scrape from the master's ``status.json``.

Runs in the exporter process. The master counts what its periodic scheduler enqueued and
whether it leads, and writes both to its status file (``periodic/master.py``), so the master
holds no prometheus_client state at all across its forks. The counter restarts at 0 with its
master, which Prometheus reads as a counter reset.

- ``forkq_periodic_enqueued_total{entry}``: jobs this master enqueued for the entry;
- ``forkq_periodic_leader``: 1 while this master is the periodic leader, else 0.

Neither series is served when the master schedules no periodic entry.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


def periodic_series(status: dict):
    periodic = status.get("periodic")
    if not isinstance(periodic, dict):
        return
    enqueued = CounterMetricFamily("forkq_periodic_enqueued", "Periodic jobs this master "
                                   "enqueued, by entry.", labels=["entry"])
    for name, count in sorted((periodic.get("enqueued") or {}).items()):
        enqueued.add_metric([str(name)], float(count))
    yield enqueued
    leader = GaugeMetricFamily("forkq_periodic_leader", "1 while this master is the periodic "
                               "leader.")
    leader.add_metric([], 1.0 if periodic.get("leader") else 0.0)
    yield leader
