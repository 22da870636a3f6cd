"""The asyncio client: enqueue from coroutines on ``redis.asyncio``, never blocking the loop.

Same payloads, checks, client middleware and keys as the synchronous client (``client.py``):
a push is prepared by ``Client.prepare``, let through by ``Client.admit`` (client middleware
runs in the loop; it must not block) and its commands made by ``push.commands`` (a unique job's
by ``push.script_call``); only the round trip differs, awaited on an asyncio connection
(``connection/aio.py``: one client per running loop, Sentinel primaries followed). Settings come
from the client's source (``forkq.configure``, ``REDIS_URL``, ``forkq.yml``), so both clients
push to the same Redis.

    jid = await forkq.aio.perform_async(SendReceipt, order_id, queue="mailers")
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from . import client, push
from .flow import context as workflow_context
from .client import Prepared
from .connection.aio import aclose, redis, send
from .options import check_run_at, finite, run_at, validate_options, validate_unique

__all__ = ["perform_async", "perform_in", "perform_at", "perform_bulk", "push_payloads",
           "redis", "send", "aclose"]


async def push_payloads(prepared: list[Prepared], at: float | None = None,
                        producer: client.Client | None = None, *,
                        now: float | None = None) -> list[dict[str, Any]]:
    """``Client.push_payloads`` on the asyncio connection of ``producer`` (default, forkq's
    client): lock and push in one round trip per ``push.SCRIPT_BATCH``; the payloads pushed.
    ``now``: the push's time (``enqueued_at``), default the clock's.
    No middleware runs here (``Client.admit`` does)."""
    producer = producer or client.default()
    payloads = [item.payload for item in prepared]
    locks = [item.lock for item in prepared]
    if not payloads:
        return []
    if producer.sink is not None:
        producer.sink(payloads, at)
        return payloads
    open_batch = workflow_context.collecting()
    if open_batch is not None:
        return open_batch.add(prepared, at)  # pushed when the batch block ends
    keys, source = producer.keys, producer.source
    now = time.time() if now is None else now
    if not any(locks):
        await send(push.sendable(keys, payloads, at, now), source)
        return payloads
    pushed: list[dict[str, Any]] = []
    for part, part_locks in push.parts(keys, payloads, locks):
        call = push.script_call(keys, part, part_locks, at, now)
        reply = await push.lock_and_push_async(call, lambda sent: send(sent, source))
        pushed += push.pushed(part, part_locks, reply)
    return pushed


def _job_class(job):
    """A ``Job`` subclass, or the class behind an ``@forkq.job`` function."""
    return getattr(job, "job_class", job)


async def perform_async(job, *args: Any, **options: Any) -> str | None:
    """``job.perform_async(*args)`` for coroutines; options as ``Job.set(**options)``."""
    return await _push_one(_job_class(job), list(args), options, None)


async def perform_in(job, seconds: float, *args: Any, **options: Any) -> str | None:
    job_class, now = _job_class(job), time.time()
    delay = finite(seconds, "aperform_in", "seconds", job_class)
    check_run_at(job_class, now + delay, now, "aperform_in", seconds)
    return await _push_one(job_class, list(args), options, now + delay)


async def perform_at(job, timestamp: float, *args: Any, **options: Any) -> str | None:
    job_class = _job_class(job)
    at = run_at(job_class, timestamp, "aperform_at", time.time())
    return await _push_one(job_class, list(args), options, at)


def _check_options(job_class, options: dict[str, Any], where: str) -> None:
    """The per-call option checks of ``Job.set()``."""
    validate_options(options, where, per_call=True)
    validate_unique({**job_class.options, **options}, where)


async def perform_bulk(job, args_list: Iterable[list], batch_size: int = client.BULK_BATCH,
                       **options: Any) -> list[str]:
    """Push one job per argument list, ``batch_size`` jobs a round trip; returns their jids.
    Bulk middleware runs once around the whole push (``hooks.py``): its ``call_next()``
    returns the push's coroutine, which it must return awaitable."""
    job_class = _job_class(job)
    where = f"{job_class.wire_name()}.aperform_bulk"
    _check_options(job_class, options, where)
    client.check_batch_size(batch_size, where)
    producer = client.default()
    if not producer.middleware.bulk:
        return await _push_bulk(producer, job_class, args_list, batch_size, options, {})
    fields: dict[str, Any] = {}
    return await producer.middleware.invoke_bulk(
        job_class, fields, client.queue_of({**job_class.options, **options}),
        lambda: _push_bulk(producer, job_class, args_list, batch_size, options, fields))


async def _push_bulk(producer: client.Client, job_class, args_list: Iterable[list],
                     batch_size: int, options: dict[str, Any],
                     fields: dict[str, Any]) -> list[str]:
    where = f"{job_class.wire_name()}.aperform_bulk"
    now = time.time()
    jids: list[str] = []
    batch: list[Prepared] = []
    for index, args in enumerate(args_list):
        item = client.check_bulk_item(args, index, where)
        prepared = producer.prepare(job_class, args, options, where=item, now=now)
        prepared.payload.update(fields)
        batch += producer.admit([prepared])
        if len(batch) >= batch_size:
            jids += [payload["jid"] for payload in await push_payloads(batch)]
            batch = []
    if batch:
        jids += [payload["jid"] for payload in await push_payloads(batch)]
    return jids


async def _push_one(job_class, args: list, options: dict[str, Any],
                    at: float | None) -> str | None:
    where = f"{job_class.wire_name()}.aperform_{'at' if at is not None else 'async'}"
    _check_options(job_class, options, where)
    producer = client.default()
    admitted = producer.admit([producer.prepare(job_class, args, options, at, where=where)])
    return admitted[0].payload["jid"] if admitted and await push_payloads(admitted, at) \
        else None
