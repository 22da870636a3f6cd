"""Test modes for applications' own suites, without Redis.

``inline()`` runs each job at enqueue, in the calling thread (a coroutine job on an event loop
of its own). ``fake()`` collects enqueued jobs
in memory; ``drain()`` runs them. Django tasks (``ForkqBackend``) take the same paths: their
signals are sent and their results kept in memory, so ``get_result`` reads them. Both take every job through the same JSON round trip as
production, so a job that would receive different data from Redis fails here too.

    from forkq import testing

    def test_signup():
        with testing.fake() as jobs:
            signup("ann@example.com")
            assert [j["args"] for j in jobs.jobs_for(send_welcome)] == [[42]]
            jobs.drain()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
from typing import Any, Iterator

from . import client as client_module
from .errors import UnknownJobError
from .job import resolve
from .payload import dumps


def run_payload(payload: dict[str, Any]) -> Any:
    """Run one job as a worker would see it: decoded from JSON, resolved by its wire name."""
    decoded = json.loads(dumps(payload))
    job_class = resolve(decoded["class"])
    if job_class is None:
        raise UnknownJobError(f"unknown job class {decoded['class']!r}: is its module imported?")
    instance = job_class()
    instance.jid = decoded["jid"]
    instance.payload = decoded
    if hasattr(instance, "run_under_test"):  # a job that wraps another's run (a Django task)
        return _off_the_loop(instance.run_under_test, decoded)
    if job_class.coroutine:
        return _run_coroutine(instance.perform(*decoded["args"]))
    return instance.perform(*decoded["args"])


def _off_the_loop(function, *args) -> Any:
    """``function(*args)``, in a thread of its own when the caller is in a running event loop
    (a test enqueueing with ``aenqueue``), where a synchronous run may not start another."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function(*args)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def _run_coroutine(coroutine) -> Any:
    """Run a coroutine job to its end, on a loop of its own (in a thread of its own when the
    caller is itself in a running loop, e.g. a test enqueueing with ``aperform_async``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class FakeQueue:
    """Jobs enqueued under ``fake()``, in enqueue order."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    def push(self, payloads: list[dict[str, Any]], at: float | None) -> None:
        for payload in payloads:
            entry = json.loads(dumps(payload))
            if at is not None:
                entry["at"] = at
            self.jobs.append(entry)

    def jobs_for(self, job: Any) -> list[dict[str, Any]]:
        """The jobs of ``job``: a job class, or a Django task (a wrapped job, by its
        ``module_path``)."""
        if hasattr(job, "wire_name"):
            return [j for j in self.jobs if j["class"] == job.wire_name()]
        return [j for j in self.jobs if j.get("wrapped") == job.module_path]

    def clear(self) -> None:
        self.jobs.clear()

    def drain(self) -> int:
        """Run every collected job, including jobs they enqueue, until none is left."""
        count = 0
        while self.jobs:
            run_payload(self.jobs.pop(0))
            count += 1
        return count


@contextlib.contextmanager
def _sink(sink) -> Iterator[None]:
    client = client_module.default()
    previous = client.sink
    client.sink = sink
    try:
        yield
    finally:
        client.sink = previous


@contextlib.contextmanager
def inline() -> Iterator[None]:
    """Run each job at once when it is enqueued (scheduled ones too)."""
    def run_all(payloads, at):
        for payload in payloads:
            run_payload(payload)

    with _sink(run_all):
        yield


@contextlib.contextmanager
def fake() -> Iterator[FakeQueue]:
    """Collect enqueued jobs in memory instead of pushing them to Redis."""
    queue = FakeQueue()
    with _sink(queue.push):
        yield queue
