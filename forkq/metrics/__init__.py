"""Prometheus metrics for a supervised forkq: job counts from the children, the rest at scrape.

Who calls what, in which process:

- master, once, before any fork: ``prepare(config)`` empties ``<data_dir>/metrics`` and sets
  ``PROMETHEUS_MULTIPROC_DIR`` for the children (no thread, no socket). Call it before the
  application is preloaded if the application's own prometheus_client metrics should join.
- worker child, after the fork: ``JobObserver()`` counts jobs (``forkq_jobs_processed_total``,
  ``forkq_jobs_failed_total``, ``forkq_job_duration_seconds`` by queue and class, plus
  ``forkq_jobs_recovered_total`` and ``forkq_jobs_poison_total``) in memory and writes this
  child's files every second (``observer.py`` says why and what it costs).
  Counting a job (``job_finished``, or ``jobs_finished`` for a processor thread's batch)
  costs 0.7-0.8 µs on the development machine.
- master, on each reap: ``mark_dead(pid)`` folds the child's files into an archive, so the
  directory does not grow as children recycle (``store.py``).
- exporter child, forked and supervised by the master: ``run_exporter(config)`` serves
  ``/metrics`` and ``/healthz`` until SIGTERM and returns; it also returns when the port is
  disabled or cannot be bound, and then must not be restarted (``exporter.py``).
"""

from .exporter import run_exporter
from .observer import JobObserver
from .store import mark_dead, prepare

__all__ = ["prepare", "JobObserver", "mark_dead", "run_exporter"]
