"""The job format: what a payload in Redis must hold to run as a job, and forkq's JSON.

``parse`` is the one check for the processor and the poller; ``dumps`` is the one encoder of
the JSON forkq writes to Redis (payloads, results, dead-set members); ``epoch_seconds`` is the
one rule for reading a payload's timestamps. Pure functions, used by every process.

``dumps`` writes compact JSON (no spaces, as Sidekiq writes it) as UTF-8 text rather than
``\\u`` escapes. It writes back whatever ``parse`` read, NaN and infinities included (a
foreign producer's ``NaN``, or ``1e400``, which every JSON reader takes for infinity), so that
a job is retried, postponed or buried rather than lost over a number. Values forkq creates are
refused at their edge instead: job arguments at enqueue (``check_args``, below), options by
their rules (``options.py``), a job's return value when its result is stored (``results.py``).

A payload that fails ``parse`` is *malformed*: it goes to the dead set at once as an envelope holding
its raw text and the reason (``dead.envelope``), and is never run. Malformed means forkq cannot
run it or name it safely: not UTF-8, not JSON (or nested deeper than the JSON reader allows, or
a number of more than 4,300 digits), not an object, no ``class`` string, ``args`` not a list,
``jid`` or ``queue`` present but not a string; or a workflow's field that the worker could not
act on at the job's end (``bid`` not a string, ``chord_index`` not a position, ``chain`` not a
list of steps each holding a payload with ``class``, ``args``, ``jid`` and ``queue``).

Fields read only when a job fails (``retry``, ``retry_count``, ``backtrace``, ``retry_queue``)
are not checked here: a job with a bad one still runs, and ``retry.py`` reads them leniently.

The other side of the format, at enqueue: ``check_args`` refuses job arguments that JSON would
change or refuse, or that a reader could not read back (an int past 4,300 digits, nesting past
``MAX_DEPTH``, a lone surrogate, which UTF-8 cannot encode), naming the argument; used by the
synchronous and asyncio clients, ``forkq enqueue`` and the Django backend.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from .errors import MalformedJobError

#: a timestamp above this is milliseconds (1e11 seconds is the year 5138): Sidekiq 8 writes
#: integer milliseconds, older Sidekiq and forkq float seconds
MS_THRESHOLD = 1e11

#: forkq's JSON text of a value; ``TypeError`` for a value JSON has no form for
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def parse(text: str | bytes) -> dict[str, Any]:
    """A job hash from queue text, or ``MalformedJobError`` saying what is wrong with it."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError as exc:
            raise MalformedJobError(f"payload is not UTF-8 text (byte {exc.start}: "
                                    f"{exc.reason})") from None
    try:
        payload, end = _scan(text, 0)
    except (StopIteration, ValueError, RecursionError):
        end = -1
    if end != len(text):  # not one bare JSON value: ``json.loads`` decides, and says why
        payload = _loads(text)
    if type(payload) is not dict:
        raise MalformedJobError(f"payload is a JSON {_kind(payload)}, not an object")
    name = payload.get("class")
    if type(name) is not str or not name:
        if name is None:
            raise MalformedJobError("payload has no 'class' string naming the job")
        raise MalformedJobError(f"payload's 'class' is {_kind(name)}, not a job name")
    if type(payload.get("args")) is not list:
        raise MalformedJobError(f"payload's 'args' is {_kind(payload.get('args'))}, "
                                f"not a list")
    jid = payload.get("jid")
    if jid is not None and type(jid) is not str:
        raise MalformedJobError(f"payload's 'jid' is {_kind(jid)}, not a string")
    queue = payload.get("queue")
    if queue is not None and (type(queue) is not str or not queue):
        raise MalformedJobError(f"payload's 'queue' is {_kind(queue)}, not a queue name")
    if "bid" in payload or "chain" in payload or "chord_index" in payload:
        _check_workflow(payload)
    return payload


def _check_workflow(payload: dict[str, Any]) -> None:
    """A batch's, chain's or chord's fields as ``flow/`` writes them: the worker acts on them
    when the job ends, so a job whose fields it could not act on is not run."""
    bid = payload.get("bid")
    if bid is not None and type(bid) is not str:
        raise MalformedJobError(f"payload's 'bid' is {_kind(bid)}, not a batch id")
    index = payload.get("chord_index")
    if index is not None and (type(index) is not int or index < 0):
        raise MalformedJobError(f"payload's 'chord_index' is {_shown(index)}, not a "
                                f"position in its chord")
    steps = payload.get("chain")
    if steps is None:
        return
    if type(steps) is not list:
        raise MalformedJobError(f"payload's 'chain' is {_kind(steps)}, not a list of steps")
    for number, step in enumerate(steps, 1):
        job = step.get("job") if type(step) is dict else None
        if type(job) is not dict or not (
                type(job.get("class")) is str and job["class"] and
                type(job.get("args")) is list and type(job.get("jid")) is str and
                type(job.get("queue")) is str and job["queue"]):
            raise MalformedJobError(f"payload's 'chain' step {number} is not a step "
                                    f"({{\"job\": a payload with class, args, jid and queue}})")


def batch_member(text: str | bytes) -> dict[str, str] | None:
    """What a malformed payload still says of its batch: its ``bid`` and ``jid``, when it is a
    JSON object holding both as strings, so that its burial counts in that batch; else None."""
    try:
        found = json.loads(text)
    except (ValueError, RecursionError):  # not UTF-8 (a ValueError too), not JSON, too deep
        return None
    if type(found) is not dict:
        return None
    bid, jid = found.get("bid"), found.get("jid")
    if type(bid) is str and bid and type(jid) is str and jid:
        return {"bid": bid, "jid": jid}
    return None


#: the JSON reader's own scanner (``json.loads`` calls it after three Python calls of checks
#: and whitespace matching, 1 µs a job here): one JSON value at an index -> (value, its end)
_scan = json.JSONDecoder().scan_once


def _loads(text: str) -> Any:
    """``json.loads``, its refusal as ``MalformedJobError``."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedJobError(f"payload is not valid JSON ({exc})") from None
    except RecursionError:
        raise MalformedJobError("payload nests JSON deeper than the JSON reader allows") from None


def _kind(value: Any) -> str:
    kinds = {dict: "dict", list: "list", str: "string", bool: "boolean", type(None): "null",
             int: "int", float: "float"}
    kind = kinds.get(type(value), type(value).__name__)
    return "an empty string" if value == "" else kind


def display_class(payload: dict[str, Any]) -> str:
    """The name a job is shown under (log ``class=``, metrics labels, the web UI): the
    ``wrapped`` class of a wrapper job (Sidekiq's rule for ActiveJob; forkq's Django tasks),
    else ``class``."""
    if "wrapped" in payload:  # (once a job: the common case pays one lookup)
        wrapped = payload["wrapped"]
        if isinstance(wrapped, str) and wrapped:
            return wrapped
    name = payload.get("class")
    return name if type(name) is str else str(name)


def error_class_name(exc: BaseException) -> str:
    """A payload's ``error_class``: the bare name for builtins, ``module.QualName`` otherwise."""
    kind = type(exc)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


# --- the rule for job arguments, checked by the clients at enqueue: only values that survive a
# JSON round trip unchanged. Anything else is refused with a ``TypeError`` naming the argument,
# its type and what to pass instead, so a mistake shows at the call site and not as a job that
# runs with different data than it was given. Nothing is ever pickled.

_SCALARS = (bool, type(None))
#: ints from here on are refused: JSON readers take at most 4,300 digits (Python's default
#: ``sys.get_int_max_str_digits``), so the worker could not read the payload
_INT_LIMIT = 10 ** 4300
#: deepest nesting of lists and dicts accepted in an argument: Ruby's JSON reader refuses
#: deeper by default (``max_nesting``), and Python's recursion limit is not far away
MAX_DEPTH = 100


def _plain(value: object, kind: type) -> bool:
    """True for a scalar JSON carries unchanged: checked inline, before any call."""
    if kind is str:
        return value.isascii() or _encodable(value)
    if kind is int:
        return -_INT_LIMIT < value < _INT_LIMIT
    return kind in _SCALARS or (kind is float and math.isfinite(value))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: what to pass instead, by type name
_ADVICE = {
    "datetime": "pass an ISO 8601 string (value.isoformat()) or an epoch timestamp",
    "date": "pass an ISO 8601 string (value.isoformat())",
    "time": "pass an ISO 8601 string (value.isoformat())",
    "timedelta": "pass a number of seconds (value.total_seconds())",
    "Decimal": "pass a string (str(value)) to keep its precision, or a float",
    "UUID": "pass a string (str(value))",
    "set": "pass a list (sorted(value))",
    "frozenset": "pass a list (sorted(value))",
    "tuple": "pass a list: JSON has no tuples, so it would arrive as a list",
    "bytes": "pass a string (decode it, or base64-encode binary data)",
    "bytearray": "pass a string (decode it, or base64-encode binary data)",
}


def check_args(args: list, where: str | Callable[[], str]) -> None:
    """Raise ``TypeError`` for the first argument that JSON would change or refuse.

    ``where`` names the call for the message; a callable is only called on an error, so that
    a bulk push does not format a name per job."""
    for index, value in enumerate(args):
        if not _plain(value, type(value)):
            prefix = where() if callable(where) else where
            check_value(value, f"{prefix}: args[{index}]")


def check_value(value: object, path: str, depth: int = 0) -> None:
    kind = type(value)
    if _plain(value, kind):
        return
    if kind in (float, int, str):
        raise TypeError(f"{path} is {_unplain(value, kind)}")
    if depth >= MAX_DEPTH and kind in (list, dict):
        raise TypeError(f"{path} nests lists and dicts more than {MAX_DEPTH} deep, which JSON "
                        f"readers refuse (Ruby's among them); flatten it")
    if kind is list:
        for index, item in enumerate(value):
            if not _plain(item, type(item)):
                check_value(item, f"{path}[{index}]", depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _plain(key, str):
                raise TypeError(f"{path} has the key {_shown(key)} of type "
                                f"{type(key).__name__}; JSON turns dict keys into strings, so "
                                f"pass string keys (valid UTF-8)")
            if not _plain(item, type(item)):
                check_value(item, f"{path}[{key!r}]", depth + 1)
        return
    name = kind.__name__
    advice = _ADVICE.get(name, "pass JSON-native values (str, int, float, bool, None, list, "
                               "dict with string keys), e.g. an id to load the object by")
    raise TypeError(f"{path} is a {kind.__module__}.{kind.__qualname__}, which is not JSON-native; "
                    f"{advice}")
def _unplain(value: Any, kind: type) -> str:
    """What is wrong with a float, int or str that ``_plain`` refused, and what to pass."""
    if kind is float:
        return f"{value!r}, which JSON cannot carry; pass None or a string"
    if kind is int:
        return "an int of more than 4300 digits, which JSON readers refuse: pass it as a string"
    index = next(i for i, char in enumerate(value) if "\ud800" <= char <= "\udfff")
    return (f"a string holding a lone surrogate ({value[index]!r} at index {index}), which "
            f"UTF-8 cannot encode; pass valid text, or base64 for binary data")


def _shown(value: Any) -> str:
    """``repr`` of a value for a message, cut short (a str of an int past 4300 digits raises)."""
    if type(value) is int and not -_INT_LIMIT < value < _INT_LIMIT:
        return "<an int of more than 4300 digits>"
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def epoch_seconds(value: Any) -> float | None:
    """A payload timestamp (``enqueued_at``, ``created_at``...) as float seconds, read as
    milliseconds past ``MS_THRESHOLD``; None when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = value / 1000.0 if value > MS_THRESHOLD else float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return seconds if math.isfinite(seconds) else None


def queue_named(payload: dict | None) -> str:
    """The queue a parsed job names (``default`` when none): where its retry or postponed
    run goes back (``Keys.retry_for``, ``Keys.schedule_for``)."""
    queue = payload.get("queue") if payload else None
    return queue if isinstance(queue, str) and queue else "default"


def home_named(keys, payload: dict | None) -> str:
    """The list a parsed job waits in: its queue (``queue_named``), or the shard of it its
    ``shard`` names (``Keys.shard_queue``, cluster layout); where its retry, scheduled or
    postponed run goes too, so a job keeps its shard for life."""
    return keys.shard_queue(queue_named(payload), payload.get("shard") if payload else None)
