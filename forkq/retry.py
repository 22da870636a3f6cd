"""What happens to a job that raised: pure backoff maths, then the write to ``retry`` or ``dead``.

Runs in the processor thread that ran the job. The job stays in that thread's private list
until the write succeeded, so a crash in between runs it again rather than losing it.

Decisions, in order: ``retry_on`` (exceptions outside it die at once); ``retry: false`` (drop
after the death handlers); the count (``retry: true`` means ``max_retries``, ``retry: N`` means
N; 0 dies at once); the job's ``retry_in(count, exc)`` hook (seconds, ``"discard"`` or
``"kill"``, where a discarded job is dropped without the death handlers); otherwise Sidekiq's backoff ``count**4 + 15 + random(10 * (count + 1))``.
"""

from __future__ import annotations

import base64
import json
import random
import time
import traceback
import zlib
from dataclasses import dataclass
from typing import Any

from .log import logger

#: marks a job recovered from a dead process with others; cleared once it fails normally
ISOLATE_KEY = "forkq_isolate"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def backoff_delay(count: int, rand_int=random.randrange) -> float:
    """Seconds before retry ``count`` (0-based): Sidekiq's default formula."""
    return float(count ** 4 + 15 + rand_int(10 * (count + 1)))


@dataclass(frozen=True)
class Decision:
    #: "retry"; "dead" (hooks, handlers, dead set); "drop" (handlers only); "discard" (nothing)
    action: str
    delay: float = 0.0
    reason: str = ""


def decide(payload: dict[str, Any], exc: BaseException, hooks: dict[str, Any],
           max_retries: int, rand_int=random.randrange) -> Decision:
    retry = payload.get("retry", True)
    retry_on = hooks.get("retry_on")
    if retry_on and not isinstance(exc, retry_on):
        return Decision("dead", reason=f"{type(exc).__name__} is not in retry_on")
    if retry is False or retry is None:
        return Decision("drop", reason="retry is false")
    limit = max_retries if retry is True else int(retry)
    count = int(payload.get("retry_count", -1)) + 1
    if count >= limit:
        return Decision("dead", reason=f"retries exhausted ({limit})" if limit else "retry is 0")
    custom = hooks["retry_in"](count, exc) if hooks.get("retry_in") else None
    if custom == "discard":
        return Decision("discard", reason="retry_in returned 'discard'")
    if custom == "kill":
        return Decision("dead", reason="retry_in returned 'kill'")
    delay = float(custom) if isinstance(custom, (int, float)) else backoff_delay(count, rand_int)
    return Decision("retry", delay=delay)


def error_class_name(exc: BaseException) -> str:
    kind = type(exc)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def encode_backtrace(lines: list[str]) -> str:
    """Sidekiq's format: strict base64 of zlib-compressed JSON of an array of strings."""
    return base64.b64encode(zlib.compress(json.dumps(lines).encode())).decode()


def decode_backtrace(text: str) -> list[str]:
    return json.loads(zlib.decompress(base64.b64decode(text)))


def with_error(payload: dict[str, Any], exc: BaseException, now: float) -> dict[str, Any]:
    """The payload with Sidekiq's error fields for this failure."""
    failed = dict(payload)
    failed.pop(ISOLATE_KEY, None)
    failed["error_message"] = str(exc)
    failed["error_class"] = error_class_name(exc)
    if "retry_count" in failed:
        failed["retry_count"] = int(failed["retry_count"]) + 1
        failed["retried_at"] = now
    else:
        failed["retry_count"] = 0
        failed["failed_at"] = now
    if failed.get("retry_queue"):
        failed["queue"] = failed["retry_queue"]
    backtrace = payload.get("backtrace")
    if backtrace:
        lines = [line.rstrip("\n") for line in traceback.format_exception(exc)]
        limit = None if backtrace is True else int(backtrace)
        failed["error_backtrace"] = encode_backtrace(lines[-limit:] if limit else lines)
    return failed


def run_death_handlers(handlers, payload: dict[str, Any], exc: BaseException) -> None:
    for handler in handlers:
        try:
            handler(payload, exc)
        except Exception:
            logger.exception("death handler %r failed for jid=%s", handler, payload.get("jid"))


class RetryWriter:
    """Applies a ``Decision``: schedule the retry, or kill the job (hooks, handlers, dead set)."""

    def __init__(self, keys, dead_set, max_retries: int, death_handlers) -> None:
        self.keys = keys
        self.dead_set = dead_set
        self.max_retries = max_retries
        self.death_handlers = death_handlers

    def handle(self, redis, payload: dict[str, Any], exc: BaseException,
               hooks: dict[str, Any]) -> Decision:
        decision = decide(payload, exc, hooks, self.max_retries)
        now = time.time()
        failed = with_error(payload, exc, now)
        if decision.action == "retry":
            redis.zadd(self.keys.retry, {_dumps(failed): now + decision.delay})
            return decision
        if decision.action == "discard":
            return decision
        if decision.action == "dead" and hooks.get("retries_exhausted"):
            try:
                hooks["retries_exhausted"](failed, exc)
            except Exception:
                logger.exception("retries_exhausted hook failed for jid=%s", payload.get("jid"))
        run_death_handlers(self.death_handlers, failed, exc)
        if decision.action == "dead" and payload.get("dead", True) is not False:
            self.dead_set.add(redis, [_dumps(failed)], now)
        return decision
