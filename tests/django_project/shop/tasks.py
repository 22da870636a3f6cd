"""The test project's tasks; each leaves a trace in Redis that the tests read."""

import asyncio

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


def trace(signal_name):
    def receiver(sender, task_result, **kwargs):
        forkq.redis().rpush("shop:signals",
                            f"{signal_name}:{task_result.task.name}:{task_result.status}")
    return receiver


task_started.connect(trace("started"), weak=False, dispatch_uid="shop-started")
task_finished.connect(trace("finished"), weak=False, dispatch_uid="shop-finished")
