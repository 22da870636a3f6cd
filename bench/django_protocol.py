"""A Django task's run protocol alone, in one process: what the worker adds to a task's body.

    python bench/django_protocol.py                  # 2,000 tasks, the least of 7 batches
    python bench/django_protocol.py --calls          # function calls a task (cProfile)
    python bench/django_protocol.py --floor          # what Django's order of events costs
    valgrind --tool=callgrind python bench/django_protocol.py --tasks 200 --batches 1
    valgrind --tool=callgrind python bench/django_protocol.py --tasks 200 --batches 2

Not a test. On a private Redis and the comparison's project (``django_site``, the ``incr``
body), ``--tasks`` tasks are enqueued through ``ForkqBackend``; then each batch puts their
``queued`` records back as the push wrote them and runs every task through the server
middleware the Django set-up registers (``close_connections_around``, ``task_protocol``) and
its body, in this thread, with the per-thread connection a worker uses. It prints the least
thread CPU a task over the batches and, with ``--calls``, the function calls a task: steadier
than a worker's drain on a shared machine. Under callgrind, the instruction counts of two runs
that differ by one batch, their difference divided by ``--tasks``, are the instructions a task
(the same on a busy machine as on a quiet one).

``--floor`` also prints what any backend that keeps Django's order of events pays a task, with
no job system around it (the least of the batches, ``--tasks`` calls each): one ``TaskResult``
built by Django's constructor, ``task_started`` and ``task_finished`` sent to the framework's
receivers (a log line each at INFO, through forkq's log as in a worker), and the two writes
that must reach the backend before them (the ``RUNNING`` status, the result), here a ``SET``
round trip each on the same per-thread client.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE, os.path.join(HERE, "django_site")]

from harness import Server  # noqa: E402


def setup(server: Server, workdir: str) -> None:
    os.environ.update(DJANGO_SETTINGS_MODULE="benchsite.settings", BENCH_DJANGO_BACKEND="forkq",
                      BENCH_REDIS_URL=server.url, REDIS_URL=server.url,
                      BENCH_DB=os.path.join(workdir, "bench.sqlite3"))
    import forkq
    from forkq import log
    from forkq.connection.source import default_source
    from forkq.contrib.django import setup as django_setup

    forkq.configure(redis_url=server.url)
    django_setup.setup()
    log.setup("INFO", os.path.join(workdir, "forkq.log"), buffered=True)
    default_source()._redis.per_thread = True  # as in a worker (``Source.use_config``)


def run_batch(payloads: list[dict], records: dict, client) -> float:
    """Thread CPU seconds a task, the ``queued`` records put back first."""
    from forkq.hooks import registry
    from forkq.job import resolve

    client.mset(records)
    chain = registry.middleware
    began = time.thread_time()
    for payload in payloads:
        job = resolve(payload["class"])()
        job.jid = payload["jid"]
        chain.invoke_server(job, payload, "default",
                            lambda job=job, payload=payload: job.perform(*payload["args"]))
    return (time.thread_time() - began) / len(payloads)


def least_cpu(action, calls: int, batches: int) -> float:
    """The least thread CPU seconds a call of ``action`` over ``batches`` of ``calls``."""
    action()
    spent = []
    for _ in range(batches):
        began = time.thread_time()
        for _ in range(calls):
            action()
        spent.append((time.thread_time() - began) / calls)
    return min(spent)


def print_floor(task, calls: int, batches: int) -> None:
    """What Django's order of events costs a task, whatever the backend (see the notes)."""
    from datetime import datetime, timezone

    from forkq.connection.source import default_source
    from forkq.contrib.django.compat import (TaskResult, TaskResultStatus, task_finished,
                                             task_started)

    sender, now = type(task.get_backend()), datetime.now(timezone.utc)
    redis = default_source().redis

    def build() -> TaskResult:
        return TaskResult(task=task, id="floor", status=TaskResultStatus.RUNNING,
                          enqueued_at=now, started_at=now, finished_at=None,
                          last_attempted_at=now, args=[], kwargs={}, backend=task.backend,
                          errors=[], worker_ids=["floor"])

    built = build()

    def signals() -> None:
        task_started.send(sender, task_result=built)
        task_finished.send(sender, task_result=built)

    parts = {"one TaskResult built": least_cpu(build, calls, batches),
             "task_started and task_finished sent": least_cpu(signals, calls, batches),
             "two SET round trips": 2 * least_cpu(lambda: redis.set("floor", "x"), calls,
                                                   batches)}
    for name, seconds in parts.items():
        print(f"floor: {name}: {seconds * 1e6:.0f} µs")
    print(f"floor: in all {sum(parts.values()) * 1e6:.0f} µs of thread CPU a task")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--calls", action="store_true",
                        help="also count the function calls a task (cProfile)")
    parser.add_argument("--floor", action="store_true",
                        help="also time what Django's order of events costs any backend")
    args = parser.parse_args()
    import tempfile

    server = Server()
    try:
        with tempfile.TemporaryDirectory(prefix="forkq-bench-protocol-") as workdir:
            setup(server, workdir)
            from benchtasks import tasks

            from forkq.payload import parse

            client = server.client
            for _ in range(args.tasks):
                tasks.incr.enqueue()
            payloads = [parse(text) for text in client.lrange("queue:default", 0, -1)]
            keys = client.keys("forkq:result:*")
            records = dict(zip(keys, client.mget(keys)))
            best = min(run_batch(payloads, records, client) for _ in range(args.batches))
            print(f"{args.tasks:,} tasks, least of {args.batches} batches: "
                  f"{best * 1e6:.0f} µs of thread CPU a task")
            if args.calls:
                import cProfile
                import pstats

                profile = cProfile.Profile()
                profile.runcall(run_batch, payloads, records, client)
                calls = pstats.Stats(profile).total_calls
                print(f"{calls / args.tasks:.1f} function calls a task")
            print(f"{int(client.get(tasks.COUNTER) or 0):,} bodies ran")
            if args.floor:
                print_floor(tasks.incr, args.tasks, args.batches)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
