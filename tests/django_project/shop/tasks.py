"""The test project's tasks; each leaves a trace in Redis that the tests read."""

import asyncio
import json
import os
import time

from django.conf import settings

import forkq
from forkq.contrib.django.compat import task, task_finished, task_started

from .models import Order


@task
def add(a, b):
    return a + b


@task(takes_context=True)
def whoami(context, label):
    return {"attempt": context.attempt, "id": context.task_result.id, "label": label}


@task
def explode(message):
    raise ValueError(message)


@task(backend="retrying")
def flaky(key):
    count = forkq.redis().incr(key)
    if count < 2:
        raise RuntimeError(f"try {count}")
    return count


@task
async def slow_double(value):
    await asyncio.sleep(0.01)
    return value * 2


@task
def record(label):
    forkq.redis().rpush("shop:ran", label)


@task
def receipt(order_id):
    return Order.objects.get(pk=order_id).item


@task
def returns_a_set():
    return {1, 2}


@task
def watched():
    return "ran"


def pause_writes_before_watched(job, payload, queue, call_next):
    """Around ``watched`` only, before the tasks' run protocol (added earlier, so outside it):
    Redis holds every write back for a moment, as a ``FAILOVER`` does (``CLIENT PAUSE
    WRITE``), so the protocol's ``RUNNING`` write waits, and reads on other connections go on.
    Registered only in a worker started with ``SHOP_PAUSE_WATCHED`` set, so that the test
    process's own middleware chain stays as other tests expect it."""
    if payload["args"][:1] == [watched.module_path]:
        forkq.redis().execute_command("CLIENT", "PAUSE", WRITE_PAUSE_MS, "WRITE")
    return call_next()


if os.environ.get("SHOP_PAUSE_WATCHED"):
    forkq.server_middleware(pause_writes_before_watched)


#: how long ``pause_writes_before_watched`` holds writes back
WRITE_PAUSE_MS = 500


def read_elsewhere(sender, task_result, **kwargs):
    """``task_started``'s receiver for ``watched``: the stored result's status, read on a
    connection of its own, as another process would read it. Connected before ``trace``'s
    receivers, whose writes on the thread's connection would wait out the pause first."""
    if task_result.task.module_path != watched.module_path:
        return
    import redis

    from forkq.connection.source import default_source

    elsewhere = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        stored = elsewhere.get(default_source().keys.result(task_result.id))
    finally:
        elsewhere.close()
    forkq.redis().rpush("shop:seen", json.loads(stored)["status"] if stored else "none")


task_started.connect(read_elsewhere, weak=False, dispatch_uid="shop-read-elsewhere")


def trace(signal_name):
    def receiver(sender, task_result, **kwargs):
        forkq.redis().rpush("shop:signals",
                            f"{signal_name}:{task_result.task.name}:{task_result.status}")
    return receiver


task_started.connect(trace("started"), weak=False, dispatch_uid="shop-started")
task_finished.connect(trace("finished"), weak=False, dispatch_uid="shop-finished")


#: one ``limited`` run at a time across the system; one over it is put back for 0.1–0.2 s
SINGLE = forkq.limiter.concurrent("shop-single", 1, lock_timeout=30, retry_wait=(0.1, 0.2))


@task
def limited(label):
    with SINGLE:
        forkq.redis().rpush("shop:limited", label)
    return label


@task
def waits_for_cancel(key):
    """Runs until it is cancelled (``forkq.cancel``): a cancel stops it at its next bytecode."""
    forkq.redis().rpush(key, "started")
    while True:
        time.sleep(0.01)
