"""The asyncio client: enqueue from coroutines on ``redis.asyncio``, never blocking the loop.

Same payloads, checks, client middleware and keys as the synchronous client (``client.py``):
the payload is built by ``client.build_payload`` and the commands by ``push.commands``; only
the round trip differs, awaited on an asyncio connection. Settings come from the synchronous
client (``forkq.configure``, ``REDIS_URL``, ``forkq.yml``), so both push to the same Redis.

An asyncio Redis client belongs to the event loop that made it: one is kept per running loop
and opened on first use. Client middleware runs in the loop; it must not block.

    jid = await forkq.aio.perform_async(SendReceipt, order_id, queue="mailers")
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any, Iterable

import redis.asyncio as aioredis

from . import arguments, client, connection, push
from .job import validate_options

#: asyncio Redis clients of each running event loop, by URL
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]]" = \
    weakref.WeakKeyDictionary()


def redis(source=None) -> aioredis.Redis:
    """The running loop's asyncio client on the Redis of ``source`` (a ``client.Client``;
    default, forkq's client); its URL is resolved as the synchronous client resolves it."""
    source = source or client.default()
    url = source._url()
    by_url = _clients.setdefault(asyncio.get_running_loop(), {})
    found = by_url.get(url)
    if found is None:
        found = by_url[url] = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=connection.SOCKET_TIMEOUT,
            socket_connect_timeout=5.0)
    return found


async def aclose() -> None:
    """Close the running loop's clients; the next call opens new ones."""
    for found in _clients.pop(asyncio.get_running_loop(), {}).values():
        await found.aclose()


async def send(commands: list[tuple], source=None) -> list:
    """Send ``commands`` in one round trip (a pipeline without MULTI) and return the replies."""
    async with redis(source).pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute()


async def push_payloads(payloads: list[dict[str, Any]], at: float | None = None,
                        source=None) -> None:
    """Push ready-made payloads (``client.build_payload``) in one round trip, through
    ``source`` (a ``client.Client``; default, forkq's client)."""
    source = source or client.default()
    if source.sink is not None:
        source.sink(payloads, at)
        return
    await send(push.commands(source.keys, payloads, at, time.time()), source)


def _job_class(job):
    """A ``Job`` subclass, or the class behind an ``@forkq.job`` function."""
    return getattr(job, "job_class", job)


async def perform_async(job, *args: Any, **options: Any) -> str | None:
    """``job.perform_async(*args)`` for coroutines; options as ``Job.set(**options)``."""
    return await _push_one(_job_class(job), list(args), options, None)


async def perform_in(job, seconds: float, *args: Any, **options: Any) -> str | None:
    return await perform_at(job, time.time() + float(seconds), *args, **options)


async def perform_at(job, timestamp: float, *args: Any, **options: Any) -> str | None:
    return await _push_one(_job_class(job), list(args), options, float(timestamp))


async def perform_bulk(job, args_list: Iterable[list], batch_size: int = client.BULK_BATCH,
                       **options: Any) -> list[str]:
    """Push one job per argument list, ``batch_size`` jobs a round trip; returns their jids."""
    job_class = _job_class(job)
    name = job_class.wire_name()
    validate_options(options, f"{name}.aperform_bulk")
    rules = client.default()._rules(job_class)  # perform's arity, as the sync client checks it
    now = time.time()
    jids: list[str] = []
    batch: list[dict[str, Any]] = []
    for index, args in enumerate(args_list):
        client.check_bulk_item(args, index, rules, f"{name}.aperform_bulk")
        payload = client.build_payload(job_class, args, options, now)
        if _allowed(job_class, payload):
            batch.append(payload)
        if len(batch) >= batch_size:
            jids += await _push_batch(batch)
            batch = []
    if batch:
        jids += await _push_batch(batch)
    return jids


async def _push_batch(batch: list[dict[str, Any]]) -> list[str]:
    await push_payloads(batch)
    return [payload["jid"] for payload in batch]


async def _push_one(job_class, args: list, options: dict[str, Any],
                    at: float | None) -> str | None:
    name = job_class.wire_name()
    where = f"{name}.aperform_{'at' if at is not None else 'async'}"
    validate_options(options, where)
    client.default()._rules(job_class).check(len(args), where)
    arguments.check(args, where)
    payload = client.build_payload(job_class, args, options, time.time())
    if not _allowed(job_class, payload):
        return None
    await push_payloads([payload], at)
    return payload["jid"]


def _allowed(job_class, payload: dict[str, Any]) -> bool:
    """Client middleware decides, as in the synchronous client (None or False stops a push)."""
    chain = client.default().middleware
    if not chain.client:
        return True
    return chain.invoke_client(job_class, payload, payload["queue"], lambda: True) \
        not in (None, False)
