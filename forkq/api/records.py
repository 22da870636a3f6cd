"""Tolerant reading of the records other processes keep in Redis: a bad one is a value, not a crash.

Pure: no Redis here. Heartbeats, the periodic state and the per-class metrics counters are
written by forkq, by Sidekiq, or by anyone with write access to Redis, so the read side never
trusts their shape. Each reader returns what it could read plus the reason it could not
(``problem``, None when the record is sound); the caller shows the record as bad with that
reason, as malformed jobs are shown, instead of letting one record take a web page,
``forkqctl status`` or a scrape down.

Limits, and why:
- JSON records nest at most ``MAX_DEPTH`` levels. Real ones nest 4 (a heartbeat's
  ``info.capsules.<name>.weights``); anything much deeper would make every later use of the
  value (``str``, ``json.dumps``, a template) recurse as deep, and 1,000 levels exhaust
  Python's stack wherever it happens to be read.
- counters hold at most ``MAX_COUNT`` (Redis' own ``INCRBY`` range, 2**63 - 1): a larger
  number cannot be a count Redis kept, and dividing it by anything overflows a float.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from redis.exceptions import ResponseError

#: levels of nested arrays and objects a JSON record may hold
MAX_DEPTH = 32
#: the largest counter Redis can hold (a signed 64-bit integer)
MAX_COUNT = 2 ** 63 - 1


def json_record(text: Any, what: str) -> tuple[Any, str | None]:
    """``(value, None)`` for sound JSON text, else ``(None, reason)``; ``what`` names the field
    in the reason (``"info"``)."""
    if not isinstance(text, str):
        return None, f"{what} is missing"
    try:
        value = json.loads(text)
    except RecursionError:
        return None, f"{what} nests JSON deeper than {MAX_DEPTH} levels"
    except ValueError as exc:
        return None, f"{what} is not JSON ({_short(str(exc))})"
    if _deeper_than(value, MAX_DEPTH):
        return None, f"{what} nests JSON deeper than {MAX_DEPTH} levels"
    return value, None


def json_object(text: Any, what: str) -> tuple[dict, str | None]:
    """``json_record`` for a record that must be an object: ``({}, reason)`` otherwise."""
    value, problem = json_record(text, what)
    if problem is None and not isinstance(value, dict):
        problem = f"{what} is a JSON {type(value).__name__}, not an object"
    return (value if problem is None else {}), problem


def count(text: Any, what: str) -> tuple[int, str | None]:
    """A counter as stored: ``(0, None)`` when absent, ``(n, None)`` for an integer from 0 to
    ``MAX_COUNT``, else ``(0, reason)``."""
    if text is None or text == "":
        return 0, None
    try:
        value = int(text)
    except (TypeError, ValueError):
        return 0, f"{what} is not an integer ({_short(repr(text))})"
    if not 0 <= value <= MAX_COUNT:
        return 0, f"{what} is out of a counter's range ({_short(str(text))})"
    return value, None


def keyed_read(read: Callable[[], Any], default: Any, kind: str) -> tuple[Any, str | None]:
    """``(read(), None)``, or ``(default, reason)`` when Redis refuses the read because the key
    holds another type than ``kind`` (a producer's ``LPUSH retry x``); other errors propagate:
    they are Redis' own problems, not the record's."""
    try:
        return read(), None
    except ResponseError as exc:
        if not wrong_type(exc):
            raise
        return default, f"its key is not a {kind} ({exc})"


def keyed_reply(reply: Any, default: Any, kind: str) -> tuple[Any, str | None]:
    """``keyed_read`` for a reply already read (a pipeline's, ``raise_on_error=False``)."""
    if wrong_type(reply):
        return default, f"its key is not a {kind} ({reply})"
    return reply, None


def wrong_type(reply: Any) -> bool:
    """Whether a reply (of ``pipeline.execute(raise_on_error=False)``, say) is Redis refusing a
    read because the key holds another type; any other error reply is raised: it is Redis'
    own problem (down, out of memory, no permission), not the record's."""
    if not isinstance(reply, Exception):
        return False
    if isinstance(reply, ResponseError) and str(reply).startswith("WRONGTYPE"):
        return True
    raise reply


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels; iterative, so it
    cannot recurse itself."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False


def _short(text: str, limit: int = 60) -> str:
    """A piece of a bad value for a reason: enough to recognise it, never megabytes."""
    return text if len(text) <= limit else text[:limit - 1] + "…"
