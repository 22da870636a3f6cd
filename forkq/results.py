"""Job results: a job's status, return value or error, kept as JSON with a TTL.

A job keeps a result only when its payload carries ``result_ttl`` (seconds; off by default for
plain forkq jobs, on for the Django backend). The record lives under ``forkq:result:<jid>``
(``keys.py``), written

- at enqueue (``queued``), by the client, in the same round trip as the push;
- when the job starts (``running``), by the thread that runs it, with the worker's identity;
- when it returns (``succeeded`` with the value) or raises (``failed`` with the error; back to
  ``queued`` with the error added to ``errors`` when a retry is scheduled);
- when it is cancelled (``cancelled``, ``flow/cancel.py``), by whoever ends it.

A final status (succeeded, failed, cancelled) is written in one script call (``FINISH``,
atomic as a MULTI, one command where a MULTI is six) with the *done* list
``forkq:done:<jid>`` (one item, kept ``DONE_TTL`` at most): a waiter (``get(jid, wait=)``)
reads the record and, unless it is final, blocks in ``BLMOVE`` of that list onto itself, which
wakes every waiter of the jid at once and leaves the item for the others. No waiter polls:
a thousand waiters are a thousand blocked connections, which cost Redis nothing until the job
ends, then one ``BLMOVE`` and one ``GET`` each.

Every write renews the TTL. A return value that JSON cannot carry is recorded as a failure of
the result (the job is not retried: running it again would return the same value).

One writer per jid at a time: the client before the job can be fetched, then the thread that
runs it. So an update is a plain GET then SET (a first run's start, one ``SET ... GET``:
``ResultRecorder._first_start``); a job run twice at once (at-least-once delivery after a
recovery) may lose one attempt's record, never the job. A record that is not one (not
JSON, not an object, a key of another type) is written anew with a warning: a record is never
worth the job, and the worker logs a write Redis refuses and runs the job on (``outcome.py``).

Readers: ``get(jid)`` and ``aget(jid)`` in any process; ``None`` for an unknown or expired jid.
A record that is not one this module writes (not JSON, too deep, an unknown status, a field of
the wrong type: anyone with write access to Redis can leave one) raises ``ResultRecordError``
naming the jid and the field, never a raw ``JSONDecodeError``, ``KeyError`` or
``RecursionError``. An error's class is a name in the record: ``exception_class`` resolves it
only among the modules this process has already imported, and never imports one.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import redis as redis_py

from . import connection
from .connection.health import refused_for_data
from .connection.scripts import Script
from .connection.source import default_source
from .errors import ResultRecordError
from .log import logger
from .options import check_ttl
from .payload import dumps, error_class_name
from .values import positive_seconds

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued", "running", "succeeded", "failed", "cancelled")
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL = (SUCCEEDED, FAILED, CANCELLED)
#: seconds the done list lives at most: it only bridges a waiter's read of a record not yet
#: final and its blocking pop (the record itself says final afterwards)
DONE_TTL = 300
#: seconds one blocking pop waits at most: below the client's socket timeout
#: (``connection.SOCKET_TIMEOUT``), so a long wait is a few pops, each blocked in Redis
WAIT_SLICE = 5.0


@dataclass(frozen=True)
class Result:
    """What a job's result record holds; times are float epoch seconds or None."""

    jid: str
    status: str
    #: the job's wire name and arguments, as pushed
    class_name: str | None = None
    args: list = field(default_factory=list)
    value: Any = None
    #: the last failure: {"class", "message", "traceback"}, or None
    error: dict[str, str] | None = None
    #: every failure, oldest first (retries included)
    errors: list[dict[str, str]] = field(default_factory=list)
    enqueued_at: float | None = None
    #: when the last run started
    started_at: float | None = None
    #: when the first run started (None in records written before it was kept)
    first_started_at: float | None = None
    finished_at: float | None = None
    #: runs started so far (1 on the first run)
    attempts: int = 0
    #: identity of the worker process of the last run, and of every run
    worker_id: str | None = None
    worker_ids: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in FINAL


def ttl_of(payload: dict[str, Any]) -> int | None:
    """Whole seconds to keep this payload's result, or None when it keeps none."""
    value = payload.get("result_ttl")
    if value is None:
        return None
    try:
        check_ttl(value, f"jid={payload.get('jid')}")
    except TypeError as exc:
        logger.warning("%s; no result is kept", exc)
        return None
    return math.ceil(value)


def error_of(exc: BaseException) -> dict[str, str]:
    return {"class": error_class_name(exc), "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc))}


def queued_commands(keys, payload: dict[str, Any], now: float) -> list[tuple]:
    """The commands that record a pushed payload as ``queued`` (none if it keeps no result);
    the client sends them in the round trip of the push, before it."""
    ttl = ttl_of(payload)
    if ttl is None:
        return []
    return [("SET", keys.result(payload["jid"]), dumps(queued_record(payload, now)), "EX", ttl)]


def queued_record(payload: dict[str, Any], now: float) -> dict[str, Any]:
    """The record of a payload pushed at ``now``: the one rule for the push's record and the
    first start's guess of it (``ResultRecorder._first_start``)."""
    return {"status": QUEUED, "enqueued_at": now, "class": payload["class"],
            "args": payload["args"]}


class ResultRecorder:
    """The writer side, called by the thread that runs a job; a no-op for payloads without
    ``result_ttl``. ``redis`` is that thread's synchronous client. Each returns the record
    as written (a dict, for ``decode_record``), or None when the payload keeps no result."""

    def __init__(self, keys) -> None:
        self.keys = keys

    @staticmethod
    def keeps(job_class, payload: dict[str, Any]) -> bool:
        """Whether the worker records this job's result: its payload asks (``result_ttl``) and
        its class does not record its own (``records_own_result``, e.g. the Django backend)."""
        return "result_ttl" in payload and not getattr(job_class, "records_own_result", False)

    def started(self, redis, payload: dict[str, Any], worker_id: str) -> dict | None:
        count = payload.get("retry_count")
        attempts = count + 2 if type(count) is int and count >= 0 else 1
        now = time.time()

        def change(record: dict[str, Any]) -> None:
            record.update(status=RUNNING, started_at=now, finished_at=None,
                          attempts=attempts, worker_id=worker_id)
            record.setdefault("first_started_at", now)
            record.setdefault("enqueued_at", payload.get("enqueued_at"))
            record.setdefault("class", payload["class"])
            record.setdefault("args", payload["args"])
            _append(record, "worker_ids", worker_id)

        if attempts == 1 and "created_at" in payload:
            return self._first_start(redis, payload, change)
        return self._update(redis, payload, change)

    def succeeded(self, redis, payload: dict[str, Any], value: Any,
                  previous: dict | None = None) -> dict | None:
        """``previous``: the record ``started`` returned to this thread, which saves a read."""
        def change(record: dict[str, Any]) -> None:
            record.update(status=SUCCEEDED, value=value, finished_at=time.time())

        return self._update(redis, payload, change, previous)

    def failed(self, redis, payload: dict[str, Any], exc: BaseException,
               will_retry: bool, previous: dict | None = None,
               counted: bool = False) -> dict | None:
        """``counted``: ``previous`` holds this failure already (written as a retry that
        Redis then refused); only its status changes."""
        def change(record: dict[str, Any]) -> None:
            record.update(status=QUEUED if will_retry else FAILED, finished_at=time.time())
            if not counted:
                _append(record, "errors", error_of(exc))

        return self._update(redis, payload, change, previous)

    def postponed(self, redis, payload: dict[str, Any],
                  previous: dict | None = None) -> dict | None:
        """Back to ``queued``: the run was put back in ``schedule`` over a limiter's limit
        (``flow/postpone.py``) and runs again from the start; written before it is put back,
        so that the next run's start comes after it."""
        def change(record: dict[str, Any]) -> None:
            record.update(status=QUEUED, finished_at=None)

        return self._update(redis, payload, change, previous)

    def cancelled(self, redis, payload: dict[str, Any],
                  previous: dict | None = None) -> dict | None:
        def change(record: dict[str, Any]) -> None:
            record.update(status=CANCELLED, finished_at=time.time())
            record.setdefault("class", payload.get("class"))
            record.setdefault("args", payload.get("args") or [])

        return self._update(redis, payload, change, previous)

    @staticmethod
    def read(redis, keys, jid: str) -> dict | None:
        """The record of ``jid`` as stored, or None."""
        text = redis.get(keys.result(jid))
        return json.loads(text) if text else None

    def _update(self, redis, payload: dict[str, Any], change,
                previous: dict | None = None) -> dict | None:
        ttl = ttl_of(payload)
        if ttl is None:
            return None
        key = self.keys.result(payload["jid"])
        if previous is not None:
            record = previous  # the one writer of this jid wrote it last (see the module notes)
        else:
            record = _readable(redis, key)
        change(record)
        text = _encode(record, payload, getattr(record, "pushed", None))
        # As a reader will read it: only a value can read back other than it was given (a
        # tuple, an int key); the rest came from JSON or is made of str, int and float here.
        written = record if type(record.get("value")) in _READ_AS_GIVEN else json.loads(text)
        if written["status"] not in FINAL:
            connection.call(redis, "SET", key, text, "EX", ttl)
            return written
        FINISH.send_by(lambda command: connection.call(redis, *command),
                       FINISH.command([key, self.keys.done(payload["jid"])],
                                      [text, ttl, min(ttl, DONE_TTL)]))
        return written

    def _first_start(self, redis, payload: dict[str, Any], change) -> dict | None:
        """``started`` of a first run in one round trip, where ``_update`` takes two: what is
        stored is almost always the ``queued`` record of the push (``queued_commands``, whose
        time the Django backend takes from ``created_at``), so the running record is built on
        that guess and swapped in with ``SET ... GET``. What it replaced is read only when
        it is not, byte for byte, the push's text (the payload came through JSON, so its
        encoding is the push's): when it was another record (a run recovered after its
        worker died, a record expired, a plain job pushed a moment after ``created_at``),
        the record built on it is written right after: for that moment a reader sees the
        run without the earlier history."""
        ttl = ttl_of(payload)
        if ttl is None:
            return None
        key = self.keys.result(payload["jid"])
        guessed = _FirstRun(queued_record(payload, payload["created_at"]))
        pushed = guessed.pushed = dumps(guessed)
        change(guessed)
        text = _encode(guessed, payload, pushed)
        try:
            replaced = connection.call(redis, "SET", key, text, "EX", ttl, "GET")
        except redis_py.ResponseError as exc:
            if not refused_for_data(exc):
                raise  # Redis is busy or failing over: the caller's ``attempt`` waits
            return self._update(redis, payload, change)  # not a string: written anew
        if replaced == pushed:
            return guessed
        record = _parsed(key, replaced)
        change(record)
        if record != guessed:
            connection.call(redis, "SET", key, _encode(record, payload), "EX", ttl)
        return record  # as written: its values came from JSON (the payload, the record)


#: a first run's record as ``started`` leaves the push's: the push's fields, then its own
_FIRST_RUN_FIELDS = ("status", "enqueued_at", "class", "args", "started_at", "finished_at",
                     "attempts", "worker_id", "first_started_at", "worker_ids")
#: how the push's record text starts (``queued_record`` puts the status first)
_PUSHED_HEAD = '{"status":"queued"'


class _FirstRun(dict):
    """A first run's record built on the push's, with the push's text (``pushed``): its
    writes copy the arguments' JSON from that text (``_first_run_text``)."""

    __slots__ = ("pushed",)


def _first_run_text(pushed: str, record: dict[str, Any]) -> str | None:
    """``dumps(record)`` for a first run's record built on the push's (its text ``pushed``),
    running or succeeded, written around that text so that the arguments are not encoded
    again; None for a record of another shape (the encoder writes it)."""
    fields = tuple(record)
    if fields == _FIRST_RUN_FIELDS:
        value = ""
    elif fields == _SUCCEEDED_FIELDS:
        value = f',"value":{dumps(record["value"])}'
    else:
        return None
    worker_id, finished_at = record["worker_id"], record["finished_at"]
    if not (record["status"] in _WRITTEN_AROUND and type(record["started_at"]) is float
            and type(record["first_started_at"]) is float and type(record["attempts"]) is int
            and (finished_at is None or type(finished_at) is float)
            and type(worker_id) is str and record["worker_ids"] == [worker_id]):
        return None
    worker, finished = dumps(worker_id), "null" if finished_at is None else repr(finished_at)
    return (f'{{"status":"{record["status"]}"{pushed[len(_PUSHED_HEAD):-1]},'
            f'"started_at":{record["started_at"]!r},"finished_at":{finished},'
            f'"attempts":{record["attempts"]},"worker_id":{worker},'
            f'"first_started_at":{record["first_started_at"]!r},"worker_ids":[{worker}]'
            f'{value}}}')


#: ... and once it succeeded (``succeeded`` adds the value)
_SUCCEEDED_FIELDS = (*_FIRST_RUN_FIELDS, "value")
#: the statuses ``_first_run_text`` writes (their JSON is the bare word)
_WRITTEN_AROUND = (RUNNING, SUCCEEDED)


#: types of a value that JSON reads back as it was given (a float that JSON cannot carry makes
#: the record's error in ``_encode``, and leaves it)
_READ_AS_GIVEN = (type(None), str, int, float, bool)

#: a final record and its done list, in one call (as a MULTI would, in one command)
FINISH = Script("""
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('EXPIRE', KEYS[2], ARGV[3])
""")


def _readable(redis, key: str) -> dict[str, Any]:
    """The record stored at ``key`` to update, or a new one when what is there is not a record
    as ``decode_record`` reads one (``_parsed``)."""
    try:
        text = connection.call(redis, "GET", key)
    except redis_py.ResponseError as exc:
        if not refused_for_data(exc):
            raise  # Redis is busy or failing over: the caller's ``attempt`` waits
        logger.warning("result record %s is not readable (%s: %.200s); written anew", key,
                       type(exc).__name__, exc)
        return {}
    return _parsed(key, text)


def _parsed(key: str, text: str | bytes | None) -> dict[str, Any]:
    """The record ``text`` holds, or a new one when it is not a record as ``decode_record``
    reads one (not JSON, not an object, a field of the wrong type, not a string key: a
    producer's or an older writer's): it is then written over, with a warning, and the job
    runs as if it had none."""
    try:
        record = json.loads(text) if text else {}
    except (ValueError, RecursionError) as exc:
        logger.warning("result record %s is not readable (%s: %.200s); written anew", key,
                       type(exc).__name__, exc)
        return {}
    problem = _record_problem(record) if text else None
    if problem:
        # the reader's rule: a record the worker kept would still be refused by forkq.result
        logger.warning("result record %s is not a result (%s); written anew", key, problem)
        return {}
    return record


def _append(record: dict[str, Any], name: str, item: Any) -> None:
    """Append to the list ``record[name]``, starting one if what is there is not a list."""
    if not isinstance(record.get(name), list):
        record[name] = []
    record[name].append(item)


def _encode(record: dict[str, Any], payload: dict[str, Any], pushed: str | None = None) -> str:
    """The record as JSON; a value JSON cannot carry becomes the record's error. ``pushed``:
    the push's record text, when ``record`` was built on it (``_FirstRun``)."""
    try:
        _refuse_non_finite(record.get("value"))
        return (pushed and _first_run_text(pushed, record)) or dumps(record)
    except (TypeError, ValueError) as exc:
        value = record.pop("value", None)
        problem = TypeError(f"{payload.get('class')} returned a {type(value).__module__}."
                            f"{type(value).__qualname__}, which JSON cannot store as its result "
                            f"({exc}); return JSON-native values (str, int, float, bool, None, "
                            f"list, dict with string keys)")
        record["status"] = FAILED
        _append(record, "errors", error_of(problem))
        return dumps(record)


def _refuse_non_finite(value: Any) -> None:
    """``ValueError`` for a NaN or infinity anywhere in ``value``: standard JSON has none, and
    ``payload.dumps`` would write them (it must, to write back any payload it reads)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not JSON")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_non_finite(item)
    elif isinstance(value, dict):
        for item in value.values():
            _refuse_non_finite(item)


def decode(jid: str, text: str | None) -> Result | None:
    """The ``Result`` a stored record holds, None for no record; ``ResultRecordError`` for a
    record that is not one."""
    if not text:
        return None
    try:
        record = json.loads(text)
    except RecursionError:
        raise ResultRecordError(f"result record of job {jid} nests JSON deeper than the JSON "
                                f"reader allows") from None
    except ValueError as exc:
        raise ResultRecordError(f"result record of job {jid} is not JSON ({exc})") from None
    return decode_record(jid, record)


#: the record's fields and the types a reader may rely on (None is allowed for all but status)
_NUMBER = (int, float)
_FIELDS = {"class": str, "args": list, "errors": list, "enqueued_at": _NUMBER,
           "started_at": _NUMBER, "finished_at": _NUMBER, "attempts": int, "worker_id": str,
           "worker_ids": list}


def decode_record(jid: str, record: Any) -> Result:
    """A ``Result`` from a record as stored; ``ResultRecordError`` names what does not fit."""
    problem = _record_problem(record)
    if problem:
        raise ResultRecordError(f"result record of job {jid} is not a result: {problem}")
    return result_of(jid, record)


def result_of(jid: str, record: dict[str, Any]) -> Result:
    """A ``Result`` from a record known to be one, unchecked: one that ``ResultRecorder``
    returned to this thread (built here, or read and checked by ``_parsed``). A record read
    from Redis goes through ``decode_record``: anyone may have written it."""
    errors = record.get("errors") or []
    worker_ids = record.get("worker_ids") or []
    return Result(jid=jid, status=record["status"], class_name=record.get("class"),
                  args=record.get("args") or [], value=record.get("value"),
                  error=errors[-1] if errors else None, errors=errors,
                  enqueued_at=record.get("enqueued_at"), started_at=record.get("started_at"),
                  first_started_at=record.get("first_started_at"),
                  finished_at=record.get("finished_at"), attempts=record.get("attempts", 0),
                  worker_id=record.get("worker_id"), worker_ids=worker_ids)


def _record_problem(record: Any) -> str | None:
    """What keeps ``record`` from being a result record this module wrote, or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if record.get("status") not in STATUSES:
        return f"status {record.get('status')!r} is none of {', '.join(STATUSES)}"
    for name, kind in _FIELDS.items():
        value = record.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"{name!r} is a {type(value).__name__}"
    for index, error in enumerate(record.get("errors") or []):
        if not (isinstance(error, dict)
                and all(isinstance(error.get(k), str) for k in ("class", "message", "traceback"))):
            return f"errors[{index}] is not an object of strings class, message and traceback"
    if not all(isinstance(each, str) for each in record.get("worker_ids") or []):
        return "'worker_ids' holds something other than strings"
    return None


def exception_class(path: str) -> type[BaseException]:
    """The exception class a result's error names (``module.QualName``; builtins by bare
    name), found only among the modules this process has imported: a record is data anyone
    with access to Redis may write, so naming a module must never run its code. Failing, it
    raises what Django's ``TaskError.exception_class`` raises: ``ValueError`` for a path that
    names something other than an exception class, ``ImportError`` for one that names nothing
    (here: nothing in a module already imported)."""
    parts = path.split(".") if "." in path else ["builtins", path]
    for split in range(len(parts) - 1, 0, -1):
        found = sys.modules.get(".".join(parts[:split]))
        for name in parts[split:] if found is not None else ():
            found = getattr(found, name, None)
        if found is None:
            continue
        if inspect.isclass(found) and issubclass(found, BaseException):
            return found
        raise ValueError(f"{path!r} does not reference a valid exception.")
    raise ImportError(f"{path!r} names nothing in a module this process has imported (forkq "
                      f"never imports a module a result record names)")


def get(jid: str, source=None, wait: float | None = None) -> Result | None:
    """The result of job ``jid``, or None (unknown, expired, or kept no result). ``source`` is
    the ``connection.source.Source`` whose Redis and namespace to read; default, forkq's.

    ``wait`` (seconds): block until the result is final (``Result.finished``) or the time is
    up, then return the record as it is; a jid with no record returns None at once (there is
    nothing that would announce its end). A wait holds a connection of its own, opened for
    the call, so that any number of threads or coroutines can wait at once."""
    slices = _slices(wait)
    source = source or default_source()
    key = source.keys.result(jid)
    if not slices:
        return decode(jid, source.redis.get(key))
    blocker = connection.make_client(source.url(), single_connection_client=True)
    try:
        found = decode(jid, blocker.get(key))
        for seconds in slices if found is not None and not found.finished else ():
            if blocker.blmove(*_rotate(source.keys.done(jid), seconds)) is not None:
                return decode(jid, blocker.get(key))
        return found if found is None or found.finished else decode(jid, blocker.get(key))
    finally:
        blocker.close()


async def aget(jid: str, source=None, wait: float | None = None) -> Result | None:
    """``get`` for coroutines, on the asyncio client (never blocks the event loop)."""
    from .connection import aio  # imports redis.asyncio: only for applications that use it

    slices = _slices(wait)
    source = source or default_source()
    key = source.keys.result(jid)
    if not slices:
        return decode(jid, await aio.redis(source).get(key))
    blocker = aio.own_client(source)
    try:
        found = decode(jid, await blocker.get(key))
        for seconds in slices if found is not None and not found.finished else ():
            if await blocker.blmove(*_rotate(source.keys.done(jid), seconds)) is not None:
                return decode(jid, await blocker.get(key))
        return found if found is None or found.finished else decode(jid, await blocker.get(key))
    finally:
        await blocker.aclose()


def _slices(wait: float | None) -> list[float]:
    """``wait`` (checked: positive seconds, or None for no wait) cut into blocking pops of at
    most ``WAIT_SLICE`` seconds."""
    if wait is None:
        return []
    whole, rest = divmod(positive_seconds(wait, "forkq.result: wait"), WAIT_SLICE)
    return [WAIT_SLICE] * int(whole) + ([rest] if rest >= 0.001 else [])


def _rotate(done: str, seconds: float) -> tuple:
    """``blmove`` arguments that move the done list's item onto the same list: the waiter
    wakes, and the item stays for the other waiters."""
    return done, done, seconds, "RIGHT", "LEFT"
