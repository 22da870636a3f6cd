"""Jobs used by the in-process tests; they record what happened in Redis."""

import threading
import time

import forkq
from forkq import client

#: set by tests that need to hold a job in perform until released
gate = threading.Event()


def record(key, value):
    client.default().redis.rpush(key, value)


class Record(forkq.Job):
    def perform(self, value):
        record("ran", value)
        return f"recorded {value}"


class Shared(forkq.Job):
    name = "HardJob"

    def perform(self, a, b):
        record("ran", f"{a}:{b}")


@forkq.job(queue="other")
def add(a, b):
    record("ran", a + b)


@forkq.job(retry=2)
def explode(value):
    record("tries", value)
    raise ValueError(f"exploded {value}")


@forkq.job(retry=False)
def explode_once(value):
    raise ValueError("no retry")


@forkq.job
def slow(value, seconds):
    record("started", value)
    time.sleep(seconds)
    record("ran", value)


@forkq.job
def wait_for_gate(value):
    record("started", value)
    gate.wait(30)
    record("ran", value)
