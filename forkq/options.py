"""Job options: what each option may hold, and the checks made where a job is defined or pushed.

Pure rules, no Redis, shared by ``job.py`` (class definition, decoration, ``set()``), the
synchronous and asyncio clients (``client.py``, ``aio.py``) and the result records
(``results.py``). Options come in three kinds: data options travel in the payload (``queue``,
``retry``, ``retry_queue``, ``dead``, ``backtrace``, ``tags``, ``result_ttl``, and
``soft_time_limit``, ``time_limit``, ``expires_in``, which the worker acts on, ``priority``,
which places the job in its queue, and ``shard_key``, which picks a sharded queue's shard);
hooks stay in
the process (``retry_in``, ``retry_on``, ``retries_exhausted``), so they are per job only;
``unique_for`` and ``unique_until`` are acted on by the client at enqueue (``flow/unique.py``),
which writes the lock's digest and release point into the payload instead.

Also here: ``Arity`` (how many arguments ``perform`` takes, checked at enqueue) and the run
time of a scheduled push (``run_at``: finite epoch seconds, at most 100 years ahead).
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Callable

from .config import MAX_RETRIES
from .flow import fairlimit, placement, unique
from .values import MAX_SECONDS, is_positive_seconds, name_problem, positive_seconds, too_long

#: options written into every payload; ``soft_time_limit``, ``time_limit`` and ``expires_in``
#: are acted on by the worker (seconds: ``flow/timelimit.py``, ``flow/expiry.py``), ``priority``
#: by the push and the fetch (``flow/placement.py``), ``shard_key`` by the push
#: (``flow/shards.py``)
DATA_OPTIONS = ("queue", "retry", "retry_queue", "dead", "backtrace", "tags", "result_ttl",
                "soft_time_limit", "time_limit", "expires_in", "priority", "shard_key")
#: options that are code, kept in the worker's registry and never serialised
HOOK_OPTIONS = ("retry_in", "retry_on", "retries_exhausted")
#: options the client acts on at enqueue (``flow/unique.py``): the payload carries the lock's
#: digest and release point (``unique_digest``, ``unique_until``) instead
UNIQUE_OPTIONS = ("unique_for", "unique_until")
#: the tenant of a fair share (``flow/placement.py``): a string, or per job a function of the
#: arguments giving it; the payload carries the string, and the tenant's concurrency cap
#: (``fair_limit``, ``flow/fairlimit.py``) when one is set
FAIR_OPTIONS = ("fair_key", "fair_limit")
KNOWN_OPTIONS = DATA_OPTIONS + HOOK_OPTIONS + UNIQUE_OPTIONS + FAIR_OPTIONS
#: furthest ahead perform_in / perform_at may schedule, in seconds (100 years)
MAX_DELAY = MAX_SECONDS


def check_ttl(value: Any, where: str) -> None:
    """Refuse a ``result_ttl`` that is not a positive number of seconds, naming the call."""
    positive_seconds(value, f"{where}: option 'result_ttl'")


def validate_options(options: dict[str, Any], where: str, per_call: bool = False) -> None:
    """Reject unknown or ill-typed options where they are written, not when a job fails."""
    for key, value in options.items():
        if key not in KNOWN_OPTIONS:
            known = ", ".join(KNOWN_OPTIONS)
            raise TypeError(f"{where}: unknown job option {key!r} (known: {known})")
        if per_call and (key in HOOK_OPTIONS or (key in FAIR_OPTIONS and callable(value))):
            raise TypeError(f"{where}: option {key!r} is code and cannot travel in a payload; "
                            f"set it in the job's own options")
        if value is not None:
            problem = _OPTION_RULES[key](value)
            if problem:
                raise TypeError(f"{where}: option {key!r} must be {problem}, not {value!r}")
    if options.get("fair_key") is not None and options.get("priority"):
        _refuse_priority_with_fair_key(where)


def _refuse_priority_with_fair_key(where: str):
    raise TypeError(f"{where}: options 'fair_key' and 'priority' cannot be combined: a fair "
                    f"queue takes its tenants in turn, each in push order; give urgent jobs a "
                    f"queue of their own")


def fair_key(merged: dict[str, Any], args: list, where) -> str | None:
    """The tenant of a push from its merged options (a function of the arguments is called);
    refused with the reason when it is not a usable name, or given with a priority other than
    0 (a fair queue takes tenants in turn, each FIFO: there is no order to pass)."""
    key = merged.get("fair_key")
    if key is None:
        if merged.get("fair_limit") is not None:
            prefix = where() if callable(where) else where
            raise TypeError(f"{prefix}: option 'fair_limit' caps the jobs of one tenant and "
                            f"needs a 'fair_key' naming the tenant")
        return None
    if callable(key):
        key = key(*args)
    problem = placement.fair_key_problem(key)
    prefix = where() if callable(where) else where
    if problem:
        raise TypeError(f"{prefix}: option 'fair_key' must give {problem}, not {key!r}")
    if merged.get("priority"):
        _refuse_priority_with_fair_key(prefix)
    return key


def validate_unique(options: dict[str, Any], where: str) -> None:
    """``unique_until`` needs ``unique_for``: checked on a job's options as merged."""
    unique.validate_options(options, where)


def _queue_rule(value: Any) -> str | None:
    if not isinstance(value, str):
        return "a queue name (a string)"
    problem = name_problem(value)
    return f"a usable queue name ({problem})" if problem else None


def _retry_rule(value: Any) -> str | None:
    if isinstance(value, bool) or (type(value) is int and 0 <= value <= MAX_RETRIES):
        return None
    return f"true, false or a count from 0 to {MAX_RETRIES} (retry {MAX_RETRIES} waits years)"


def _backtrace_rule(value: Any) -> str | None:
    if isinstance(value, bool) or (type(value) is int and value >= 0):
        return None
    return "true, false or a line count >= 0"


def _retry_on_rule(value: Any) -> str | None:
    types = value if isinstance(value, tuple) else (value,)
    if all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        return None
    return "an exception class or a tuple of them"


def _seconds_rule(value: Any) -> str | None:
    return None if is_positive_seconds(value) else f"a positive number of seconds{too_long(value)}"


_OPTION_RULES: dict[str, Callable[[Any], str | None]] = {
    "queue": _queue_rule,
    "retry_queue": _queue_rule,
    "retry": _retry_rule,
    "dead": lambda value: None if isinstance(value, bool) else "true or false",
    "backtrace": _backtrace_rule,
    "tags": lambda value: None if isinstance(value, list) and all(
        isinstance(tag, str) for tag in value) else "a list of strings",
    "retry_in": lambda value: None if callable(value) else "callable",
    "retries_exhausted": lambda value: None if callable(value) else "callable",
    "retry_on": _retry_on_rule,
    "unique_for": lambda value: None if is_positive_seconds(value)
    else f"a positive number of seconds{too_long(value)} (the lock's TTL)",
    "unique_until": lambda value: None if value in unique.UNTIL else "'start' or 'success'",
    "result_ttl": _seconds_rule,
    "soft_time_limit": _seconds_rule,
    "time_limit": _seconds_rule,
    "expires_in": _seconds_rule,
    "priority": placement.priority_rule,
    "fair_key": lambda value: None if callable(value) else placement.fair_key_problem(value),
    "fair_limit": fairlimit.limit_rule,
    "shard_key": lambda value: None if isinstance(value, str) and value and not name_problem(
        value) else "a non-empty string without whitespace or commas (a key's jobs share a shard)",
}


class Arity:
    """How many positional arguments ``perform`` accepts; checked at enqueue, cached per class.

    A payload carries positional arguments only, so a required keyword-only parameter makes
    the job impossible to run."""

    def __init__(self, job_class: type) -> None:
        self.fewest, self.most, self.text = 0, math.inf, "(*args)"
        self.unrunnable: str | None = None
        parameters = _perform_parameters(job_class)
        if parameters is None:
            return
        kinds = inspect.Parameter
        positional = [p for p in parameters if p.kind in (kinds.POSITIONAL_ONLY,
                                                         kinds.POSITIONAL_OR_KEYWORD)]
        self.fewest = sum(p.default is kinds.empty for p in positional)
        if not any(p.kind is kinds.VAR_POSITIONAL for p in parameters):
            self.most = len(positional)
        self.text = f"({', '.join(str(p) for p in parameters)})"
        required = [p.name for p in parameters
                    if p.kind is kinds.KEYWORD_ONLY and p.default is kinds.empty]
        if required:
            self.unrunnable = (f"perform{self.text} requires the keyword-only argument "
                               f"{required[0]!r}, which a job cannot receive: payload arguments "
                               f"are positional")

    def check(self, count: int, where: Any) -> None:
        if self.fewest <= count <= self.most and self.unrunnable is None:
            return
        prefix = where() if callable(where) else where
        if self.unrunnable:
            raise TypeError(f"{prefix}: {self.unrunnable}")
        wanted = (f"{self.fewest}" if self.fewest == self.most else
                  f"at least {self.fewest}" if self.most == math.inf else
                  f"{self.fewest} to {self.most}")
        raise TypeError(f"{prefix}: perform{self.text} takes {wanted} argument"
                        f"{'' if wanted == '1' else 's'}, but {count} were given")


def _perform_parameters(job_class: type) -> list[inspect.Parameter] | None:
    # A decorated function is kept as a staticmethod ``_function``: its own parameters count.
    raw = job_class.__dict__.get("_function") or inspect.getattr_static(job_class, "perform")
    target = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    try:
        # A decorator's own signature, not the one it wraps: it may inject arguments.
        parameters = list(inspect.signature(target, follow_wrapped=False).parameters.values())
    except (TypeError, ValueError):
        return None
    return parameters if isinstance(raw, staticmethod) else parameters[1:]


def run_at(job_class: type, timestamp: Any, method: str, now: float) -> float:
    """A scheduled push's run time as a finite float of epoch seconds, at most 100 years
    ahead (a timestamp in milliseconds is refused); shared by the sync and asyncio clients."""
    at = finite(timestamp, method, "timestamp", job_class)
    check_run_at(job_class, at, now, method, timestamp)
    return at


def check_run_at(job_class: type, at: float, now: float, method: str, given: Any) -> None:
    if at - now <= MAX_DELAY:
        return
    if method.endswith("perform_in"):
        raise ValueError(f"{job_class.wire_name()}.{method}: seconds {given!r} is more than "
                         f"the longest delay, {MAX_DELAY:.0f} (100 years)")
    raise ValueError(f"{job_class.wire_name()}.{method}: {given!r} is more than 100 "
                     f"years from now (a timestamp in milliseconds? pass epoch seconds)")


def finite(value: Any, method: str, unit: str, job_class: type) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{job_class.wire_name()}.{method}: {unit} must be a number, not "
                        f"{value!r} ({type(value).__name__}); for a datetime pass "
                        f"value.timestamp(), for a timedelta value.total_seconds()")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float: far beyond the longest delay too
        number = math.inf
    if not math.isfinite(number):
        shown = value if isinstance(value, float) else f"an int of {value.bit_length()} bits"
        raise ValueError(f"{job_class.wire_name()}.{method}: {unit} is {shown}; pass a finite "
                         f"number of seconds, at most {MAX_DELAY:.0f} (100 years) ahead")
    return number
