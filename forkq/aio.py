"""The asyncio client: enqueue from coroutines on ``redis.asyncio``, never blocking the loop.

Same payloads, checks, client middleware and keys as the synchronous client (``client.py``):
the payload is built by ``client.build_payload``, the commands by ``push.commands`` (a unique
job's by ``unique_push.script_call``); only the round trip differs, awaited on an asyncio
connection. Settings come from the synchronous client (``forkq.configure``, ``REDIS_URL``,
``forkq.yml``), so both push to the same Redis; on a Sentinel URL the connections follow the
primary through a failover (``aio_sentinel.py``).

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

from .connection import aio as aio_sentinel, urls as redis_url
from . import arguments, client, connection, push, unique_push
from .job import run_at, validate_options, validate_unique

#: asyncio Redis clients of each running event loop, by URL
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]]" = \
    weakref.WeakKeyDictionary()


def redis(source=None) -> aioredis.Redis:
    """The running loop's asyncio client on the Redis of ``source`` (a ``client.Client``;
    default, forkq's client); its URL is resolved as the synchronous client resolves it."""
    source = source or client.default()
    url = source._url()
    loop = asyncio.get_running_loop()
    by_url = _clients.get(loop)
    if by_url is None:  # a loop's first push: the time to let go of closed ones
        _forget_closed_loops()
        by_url = _clients[loop] = {}
    found = by_url.get(url)
    if found is None:
        found = by_url[url] = _make_client(url)
    return found


def _forget_closed_loops() -> None:
    """Drop the clients of loops that were closed without ``aclose()`` (each
    ``asyncio.run`` is a new loop): the clients hold their loop, so the weak keys alone never
    let go. Their sockets close when the clients are collected."""
    for loop in [loop for loop in _clients if loop.is_closed()]:
        del _clients[loop]


def _make_client(url: str) -> aioredis.Redis:
    """An asyncio client on the URL as ``redis_url.parse`` reads it (its query parameters,
    ``wait_replicas``), the way ``connection.make_client`` builds the synchronous one; on a
    Sentinel URL its connections follow the primary (``aio_sentinel.py``)."""
    target = redis_url.parse(url)
    settings = dict(socket_timeout=connection.SOCKET_TIMEOUT, socket_connect_timeout=5.0,
                    decode_responses=True, **target.options)
    found = aioredis.Redis.from_pool(_pool(target, settings))
    found.forkq_wait = connection.wait_setting(target)
    return found


def _pool(target: redis_url.Target, settings: dict) -> aioredis.ConnectionPool:
    if target.sentinels is not None:
        return aio_sentinel.primary_pool(target, **settings)
    if settings.pop("ssl"):
        connection_class = aioredis.SSLConnection
    elif "path" in settings:
        connection_class = aioredis.UnixDomainSocketConnection
    else:
        connection_class = aioredis.Connection
    return aioredis.ConnectionPool(connection_class=connection_class, **settings)


async def aclose() -> None:
    """Close the running loop's clients; the next call opens new ones."""
    for found in _clients.pop(asyncio.get_running_loop(), {}).values():
        await found.aclose()


async def send(commands: list[tuple], source=None) -> list:
    """Send ``commands`` in one round trip (a pipeline without MULTI) and return the replies."""
    found = redis(source)
    wait = found.forkq_wait
    async with found.pipeline(transaction=False) as pipe:
        for command in [*commands, ("WAIT", *wait)] if wait is not None else commands:
            pipe.execute_command(*command)
        replies = await pipe.execute()
    if wait is not None:
        connection.check_wait(replies.pop(), wait)
    return replies


async def push_payloads(payloads: list[dict[str, Any]], at: float | None = None,
                        source=None) -> None:
    """Push ready-made payloads (``client.build_payload``) in one round trip, through
    ``source`` (a ``client.Client``; default, forkq's client)."""
    source = source or client.default()
    if source.sink is not None:
        source.sink(payloads, at)
        return
    await send(push.commands(source.keys, payloads, at, time.time()), source)


async def _push_unique(payloads: list[dict[str, Any]], locks: list,
                       at: float | None) -> list[dict[str, Any]]:
    """``Client._push_unique`` on the asyncio connection: lock and push the payloads in one
    round trip per ``unique_push.SCRIPT_BATCH`` (``unique_push.py``). The payloads pushed."""
    source = client.default()
    if source.sink is not None or not any(locks):
        await push_payloads(payloads, at, source)
        return payloads
    pushed: list[dict[str, Any]] = []
    for part, part_locks in unique_push.parts(payloads, locks):
        call = unique_push.script_call(source.keys, part, part_locks, at, time.time())
        (reply,) = await unique_push.LOCK_PUSH.send_by_async(
            lambda command: send([command], source), call)
        pushed += unique_push.pushed(part, part_locks, reply)
    return pushed


def _job_class(job):
    """A ``Job`` subclass, or the class behind an ``@forkq.job`` function."""
    return getattr(job, "job_class", job)


async def perform_async(job, *args: Any, **options: Any) -> str | None:
    """``job.perform_async(*args)`` for coroutines; options as ``Job.set(**options)``."""
    return await _push_one(_job_class(job), list(args), options, None)


async def perform_in(job, seconds: float, *args: Any, **options: Any) -> str | None:
    return await perform_at(job, time.time() + float(seconds), *args, **options)


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
    """Push one job per argument list, ``batch_size`` jobs a round trip; returns their jids."""
    job_class = _job_class(job)
    name = job_class.wire_name()
    _check_options(job_class, options, f"{name}.aperform_bulk")
    client.check_batch_size(batch_size, f"{name}.aperform_bulk")
    rules = client.default()._rules(job_class)  # perform's arity, as the sync client checks it
    now = time.time()
    jids: list[str] = []
    batch: list[dict[str, Any]] = []
    for index, args in enumerate(args_list):
        client.check_bulk_item(args, index, rules, f"{name}.aperform_bulk")
        payload = client.build_payload(job_class, args, options, now)
        # the lock's fields are in the payload before middleware sees it, as in the sync client
        lock = client.unique_lock(job_class, payload, options, None, now)
        if _allowed(job_class, payload):
            batch.append((payload, lock))
        if len(batch) >= batch_size:
            jids += await _push_batch(batch)
            batch = []
    if batch:
        jids += await _push_batch(batch)
    return jids


async def _push_batch(batch: list[tuple[dict[str, Any], Any]]) -> list[str]:
    pushed = await _push_unique([p for p, _ in batch], [lock for _, lock in batch], None)
    return [payload["jid"] for payload in pushed]


async def _push_one(job_class, args: list, options: dict[str, Any],
                    at: float | None) -> str | None:
    name = job_class.wire_name()
    where = f"{name}.aperform_{'at' if at is not None else 'async'}"
    _check_options(job_class, options, where)
    client.default()._rules(job_class).check(len(args), where)
    arguments.check(args, where)
    now = time.time()
    payload = client.build_payload(job_class, args, options, now)
    lock = client.unique_lock(job_class, payload, options, at, now)
    if not _allowed(job_class, payload):
        return None
    return payload["jid"] if await _push_unique([payload], [lock], at) else None


def _allowed(job_class, payload: dict[str, Any]) -> bool:
    """Client middleware decides, as in the synchronous client (None or False stops a push)."""
    chain = client.default().middleware
    if not chain.client:
        return True
    return chain.invoke_client(job_class, payload, payload["queue"], lambda: True) \
        not in (None, False)
