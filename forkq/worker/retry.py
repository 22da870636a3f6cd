"""What happens to a job that raised: pure backoff maths, then the write to ``retry`` or ``dead``.

Runs in the processor thread that ran the job. The job stays in that thread's private list
until the write succeeded, so a crash in between runs it again rather than losing it.

Decisions, in order: ``retry_on`` (exceptions outside it die at once); ``retry: false`` (drop
after the death handlers); the count (``retry: true`` means ``max_retries``, ``retry: N`` means
N; 0 dies at once); the job's ``retry_in(count, exc)`` hook (seconds, ``"discard"`` or
``"kill"``, where a discarded job is dropped without the death handlers); otherwise Sidekiq's
backoff ``count**4 + 15 + random(10 * (count + 1))``.

Fields a producer wrote badly never stop this path (it must not lose the job it is about to
record): like Sidekiq, a ``retry`` that is neither a boolean, null nor an integer means
``max_retries``, and a negative one means 0; a ``retry_count`` that is not a count >= 0 counts
from the start; a ``backtrace`` that is not ``true`` or a count > 0 keeps none; a
``retry_queue`` that is not a queue name is ignored; a ``retry_in`` hook that raises or returns
something other than a finite delay >= 0 (or ``"discard"``/``"kill"``) gets the default
backoff. Each such fallback is named in the failure's log line (``Decision.summary``). A retry
that Redis refuses for its data (``retry`` made a list by a producer) sends the job to the dead
set instead, the refusal appended to its ``error_message``.
"""

from __future__ import annotations

import base64
import json
import math
import random
import time
import traceback
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import redis as redis_py

from ..flow import batch_scripts, unique
from ..log import logger
from ..payload import dumps, error_class_name, home_named
from ..values import name_problem

#: marks a job recovered from a dead process with others; cleared once it fails normally
ISOLATE_KEY = "forkq_isolate"
#: retry counts past this are backed off as this one (count**4 seconds is already 300 years)
BACKOFF_COUNT_CAP = 10_000



def backoff_delay(count: int, rand_int=random.randrange) -> float:
    """Seconds before retry ``count`` (0-based): Sidekiq's default formula."""
    count = min(count, BACKOFF_COUNT_CAP)
    return float(count ** 4 + 15 + rand_int(10 * (count + 1)))


@dataclass(frozen=True)
class Decision:
    #: "retry"; "dead" (hooks, handlers, dead set); "drop" (handlers only); "discard" (nothing)
    action: str
    delay: float = 0.0
    reason: str = ""
    #: what happens next, for the failure's log line: "retry 3/25 in 96 s", "dead after ..."
    summary: str = ""
    #: fallbacks taken for fields or hooks that were not usable
    notes: tuple[str, ...] = field(default=())


def shown(value: Any, limit: int = 40) -> str:
    """``repr`` of a payload value, cut to ``limit`` characters (payloads can be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def retry_limit(value: Any, max_retries: int) -> tuple[int | None, str]:
    """Retries allowed by a job's ``retry`` field (None: never retried) and a note when the
    value was not usable."""
    if value is True:
        return max_retries, ""
    if value is False or value is None:
        return None, ""
    if type(value) is int:
        return max(0, value), ""
    return max_retries, f"retry {shown(value)} is not true, false or a count: {max_retries} used"


def previous_count(payload: dict[str, Any]) -> tuple[int, str]:
    """The job's ``retry_count`` (-1 before its first failure) and a note when it was bad."""
    if "retry_count" not in payload:
        return -1, ""
    value = payload["retry_count"]
    if type(value) is int and value >= 0:
        return value, ""
    return -1, f"retry_count {shown(value)} is not a count: counted from 0"


def queue_to_retry_in(payload: dict[str, Any]) -> tuple[str | None, str]:
    """The job's ``retry_queue`` when it is a usable queue name (the config's rule, so some
    worker can be told to read it), else None, with a note when one was given: a name with a
    comma or a newline would strand the job in a queue no worker is configured to read."""
    value = payload.get("retry_queue")
    if value is None:
        return None, ""
    problem = name_problem(value) if isinstance(value, str) else "not a string"
    if problem is None:
        return value, ""
    return None, f"retry_queue {shown(value)} is not a queue name ({problem}): ignored"


def decide(payload: dict[str, Any], exc: BaseException, hooks: dict[str, Any],
           max_retries: int, rand_int=random.randrange) -> Decision:
    limit, note = retry_limit(payload.get("retry", True), max_retries)
    _, queue_note = queue_to_retry_in(payload)
    notes = tuple(n for n in (note, queue_note) if n)
    retry_on = hooks.get("retry_on")
    if retry_on and not isinstance(exc, retry_on):
        reason = f"{type(exc).__name__} is not in retry_on"
        return Decision("dead", reason=reason, summary=f"dead: {reason}", notes=notes)
    if limit is None:
        return Decision("drop", reason="retry is false", summary="dropped (retry: false)")
    previous, note = previous_count(payload)
    notes += (note,) if note else ()
    count = previous + 1
    if count >= limit:
        summary = f"dead after {limit} retries" if limit else "dead: retry is 0"
        return Decision("dead", reason=f"retries exhausted ({limit})" if limit else "retry is 0",
                        summary=summary, notes=notes)
    custom, note = _custom_delay(hooks.get("retry_in"), count, exc)
    notes += (note,) if note else ()
    if custom == "discard":
        return Decision("discard", reason="retry_in returned 'discard'",
                        summary="discarded (retry_in returned 'discard')", notes=notes)
    if custom == "kill":
        return Decision("dead", reason="retry_in returned 'kill'",
                        summary="dead: retry_in returned 'kill'", notes=notes)
    delay = custom if custom is not None else backoff_delay(count, rand_int)
    return Decision("retry", delay=delay, summary=f"retry {count + 1}/{limit} in {delay:.0f} s",
                    notes=notes)


def _custom_delay(hook: Callable | None, count: int, exc: BaseException):
    """The ``retry_in`` hook's answer: a delay, ``"discard"``, ``"kill"``, or None for the
    default backoff, with a note when the hook raised or answered something unusable."""
    if hook is None:
        return None, ""
    try:
        answer = hook(count, exc)
    except Exception as hook_error:
        logger.exception("retry_in hook failed; the default backoff is used")
        return None, f"retry_in raised {type(hook_error).__name__}: default backoff used"
    if answer is None or answer in ("discard", "kill"):
        return answer, ""
    if type(answer) in (int, float) and math.isfinite(answer) and answer >= 0:
        return float(answer), ""
    return None, f"retry_in returned {shown(answer)}: default backoff used"


def encode_backtrace(lines: list[str]) -> str:
    """Sidekiq's format: strict base64 of zlib-compressed JSON of an array of strings.

    ASCII escapes, not ``payload.dumps``: a line may hold lone surrogates (a file name or a
    message read with ``surrogateescape``), which only an escape turns into UTF-8 bytes."""
    return base64.b64encode(zlib.compress(json.dumps(lines).encode())).decode()


def error_message(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception cannot even be shown."""
    try:
        return str(exc)
    except Exception as show_error:
        return f"(str() of the exception raised {type(show_error).__name__})"


def with_error(payload: dict[str, Any], exc: BaseException, now: float,
               default_backtrace: int = 0) -> dict[str, Any]:
    """The payload with Sidekiq's error fields for this failure; a job whose options do not
    say ``backtrace`` keeps the last ``default_backtrace`` lines (config ``default_backtrace``)."""
    failed = dict(payload)
    failed.pop(ISOLATE_KEY, None)
    failed["error_message"] = error_message(exc)
    failed["error_class"] = error_class_name(exc)
    previous, _ = previous_count(payload)
    failed["retry_count"] = previous + 1
    if previous >= 0:
        failed["retried_at"] = now
    else:
        failed["failed_at"] = now
    retry_queue, _ = queue_to_retry_in(payload)
    if retry_queue is not None and retry_queue != failed.get("queue"):
        failed.update(unique.moved(payload, retry_queue))
        failed.pop("shard", None)  # the shard was the old queue's (``flow/shards.py``)
    backtrace = payload.get("backtrace", default_backtrace)
    if backtrace is True or (type(backtrace) is int and backtrace > 0):
        lines = [line.rstrip("\n") for line in traceback.format_exception(exc)]
        failed["error_backtrace"] = encode_backtrace(
            lines if backtrace is True else lines[-backtrace:])
    return failed


def run_death_handlers(handlers, payload: dict[str, Any], exc: BaseException) -> None:
    for handler in handlers:
        try:
            handler(payload, exc)
        except Exception:
            logger.exception("death handler %r failed for jid=%s", handler, payload.get("jid"))


@dataclass(frozen=True)
class Outcome:
    """A failure decided and encoded, ready to write (the write may be repeated)."""

    decision: Decision
    #: the job with its error fields, as JSON text
    text: str
    score: float
    bury: bool
    #: (digest, queue, jid) of the unique lock the job's death releases, if any
    unlock: tuple[str, str, str] | None = None

    @property
    def summary(self) -> str:
        """What happens next, with any fallback taken: ``retry 3/25 in 96 s``."""
        text = self.decision.summary
        if self.decision.action == "dead" and not self.bury:
            text = text.replace("dead", "dropped (dead: false)", 1)
        return "; ".join((text,) + self.decision.notes)


class RetryWriter:
    """Applies a ``Decision``: schedule the retry, or kill the job (hooks, handlers, dead set)."""

    def __init__(self, keys, dead_set, max_retries: int, death_handlers,
                 default_backtrace: int = 0) -> None:
        self.keys = keys
        self.dead_set = dead_set
        self.max_retries = max_retries
        self.death_handlers = death_handlers
        self.default_backtrace = default_backtrace

    def handle(self, redis, payload: dict[str, Any], exc: BaseException,
               hooks: dict[str, Any], attempt: Callable = lambda write: write(),
               before_write: Callable[[bool], None] = lambda will_retry: None) -> Outcome:
        """Decide, run the hooks once, then write through ``attempt`` (which may repeat the
        write while Redis is away; the text written is the same every time). ``before_write``
        is called first, told whether the job will be retried: what it writes (the result
        record) must be there before the retry can run, or before a burial pushes a batch's
        callbacks, which read it. A retry that Redis refuses becomes a death, and
        ``before_write`` is told so again."""
        decision = decide(payload, exc, hooks, self.max_retries)
        now = time.time()
        failed = with_error(payload, exc, now, self.default_backtrace)
        outcome = Outcome(decision, dumps(failed), now + decision.delay,
                          decision.action == "dead" and payload.get("dead", True) is not False,
                          death_unlock(payload) if decision.action != "retry" else None)
        if decision.action in ("dead", "drop"):
            self._run_death_hooks(decision, failed, exc, hooks)
        before_write(decision.action == "retry")
        try:
            attempt(lambda: self.write(redis, outcome, payload))
        except redis_py.ResponseError as refused:
            # only a refusal for the data gets past ``attempt``: it would be refused again
            if decision.action != "retry":
                raise
            return self._bury_refused(redis, payload, failed, exc, refused, attempt,
                                      before_write)
        return outcome

    def _bury_refused(self, redis, payload: dict[str, Any], failed: dict[str, Any],
                      exc: BaseException, refused: Exception, attempt: Callable,
                      before_write: Callable[[bool], None]) -> Outcome:
        """The retry could not be written (``retry`` is not a sorted set...): the job goes to
        the dead set instead, its error message saying why, rather than hold its thread."""
        reason = f"Redis refused its retry: {refused}"
        failed["error_message"] = f"{failed['error_message']} [not retried: {reason}]"
        outcome = Outcome(Decision("dead", reason=reason, summary=f"dead: {reason}"),
                          dumps(failed), time.time(), True, death_unlock(failed))
        run_death_handlers(self.death_handlers, failed, exc)
        before_write(False)
        attempt(lambda: self.write(redis, outcome, payload))
        return outcome

    def _run_death_hooks(self, decision: Decision, failed: dict[str, Any],
                         exc: BaseException, hooks: dict[str, Any]) -> None:
        if decision.action == "dead" and hooks.get("retries_exhausted"):
            try:
                hooks["retries_exhausted"](failed, exc)
            except Exception:
                logger.exception("retries_exhausted hook failed for jid=%s", failed.get("jid"))
        run_death_handlers(self.death_handlers, failed, exc)

    def write(self, redis, outcome: Outcome, payload: dict[str, Any] | None = None) -> None:
        if payload is not None and "bid" in payload:
            # a batch member: the count is written by the same script as the retry or death
            batch_scripts.failed(redis, self.keys, payload, outcome,
                                 self.dead_set.trim_args(outcome.score))
        elif outcome.decision.action == "retry":
            redis.zadd(self.keys.retry_for(home_named(self.keys, payload)),
                       {outcome.text: outcome.score})
        elif outcome.bury:
            self.dead_set.add(redis, [outcome.text], outcome.score)
        if outcome.unlock:
            unique.release(redis, self.keys, *outcome.unlock)


def death_unlock(payload: dict[str, Any]) -> tuple[str, str, str] | None:
    """The unique lock a job's death (dead, dropped or discarded) releases, if any."""
    lock_digest = payload.get("unique_digest")
    if isinstance(lock_digest, str) and unique.releases_at(payload, "dead"):
        return lock_digest, unique.lock_queue(payload), str(payload.get("jid"))
    return None
