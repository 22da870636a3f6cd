"""Job bodies the benchmark runs: nothing, one Redis round trip, and a latency probe."""

import time

import forkq


class Empty(forkq.Job):
    def perform(self, n):
        pass


class Incr(forkq.Job):
    def perform(self, n):
        forkq.redis().incr("bench:counter")


class Probe(forkq.Job):
    """Records how long the job waited between its enqueue and its start."""

    options = {"queue": "default"}

    def perform(self, sent_at):
        forkq.redis().rpush("bench:latency", time.time() - sent_at)
