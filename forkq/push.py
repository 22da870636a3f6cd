"""The Redis commands that push payloads: pure, shared by every client.

A payload with a future ``at`` goes to ``schedule``; otherwise it gets ``enqueued_at`` and goes
to its queue (``SADD queues`` then one multi-value ``LPUSH`` per queue). A payload that keeps
a result (``result_ttl``) is recorded as ``queued`` by a ``SET`` sent before its push, so a
worker that fetches it at once always finds the record.
"""

from __future__ import annotations

from typing import Any

from . import results
from .payload import dumps


def commands(keys, payloads: list[dict[str, Any]], at: float | None,
             now: float) -> list[tuple]:
    """What to send, in order, to push ``payloads`` (mutated: ``enqueued_at`` is set)."""
    recorded: list[tuple] = []
    for payload in payloads:
        recorded += results.queued_commands(keys, payload, now)
    if at is not None and at > now:
        members: list = []
        for payload in payloads:
            members += (at, dumps(payload))
        return recorded + [("ZADD", keys.schedule, *members)]
    by_queue: dict[str, list[str]] = {}
    for payload in payloads:
        payload["enqueued_at"] = now
        by_queue.setdefault(payload["queue"], []).append(dumps(payload))
    return recorded + [("SADD", keys.queues, *by_queue)] + [
        ("LPUSH", keys.queue(queue), *texts) for queue, texts in by_queue.items()]
