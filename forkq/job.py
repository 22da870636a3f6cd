"""Jobs: the ``Job`` base class, the ``@job`` decorator and the registry of known jobs.

A job's wire name (``class`` in payloads) is ``module.QualifiedName`` unless it sets ``name``;
then ``name`` is written and the qualified name is still accepted when fetched. The worker runs
only jobs registered here by the modules named in ``require:`` (DESIGN.md §5): a payload never
makes forkq import anything.

Options, per job (``options = {...}`` or decorator keywords) and per call (``Job.set(...)``):
data options travel in the payload (``queue``, ``retry``, ``retry_queue``, ``dead``,
``backtrace``, ``tags``, ``result_ttl``, and ``soft_time_limit``, ``time_limit``,
``expires_in``, which the worker acts on); hooks stay in the process (``retry_in``,
``retry_on``, ``retries_exhausted``), so they are per job only; ``unique_for`` and
``unique_until`` are acted on by the client at enqueue (``unique.py``), which writes the lock's
digest and release point into the payload instead. Every option is checked where it is written
(class definition, decoration, ``set()``), and ``perform``'s arity at enqueue.

A job whose ``perform`` is a coroutine function (``async def``, or ``@forkq.job`` on an
``async def``) is a *coroutine job*: the worker runs it on its event loop (``aio_runner.py``),
not in a processor thread. Async generator functions are refused at definition. The enqueue
methods have asyncio twins (``aperform_async``...) that delegate to ``aio.py``.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import time
from typing import Any, Callable, Iterable

from .flow import unique
from .config import MAX_RETRIES
from .values import YEAR, is_positive_seconds, name_problem

#: options written into every payload; the last three are acted on by the worker (seconds:
#: ``timelimit.py``, ``expiry.py``)
DATA_OPTIONS = ("queue", "retry", "retry_queue", "dead", "backtrace", "tags", "result_ttl",
                "soft_time_limit", "time_limit", "expires_in")
#: options that are code, kept in the worker's registry and never serialised
HOOK_OPTIONS = ("retry_in", "retry_on", "retries_exhausted")
#: options the client acts on at enqueue (``unique.py``): the payload carries the lock's digest
#: and release point (``unique_digest``, ``unique_until``) instead
UNIQUE_OPTIONS = ("unique_for", "unique_until")
KNOWN_OPTIONS = DATA_OPTIONS + HOOK_OPTIONS + UNIQUE_OPTIONS
#: furthest ahead perform_in / perform_at may schedule, in seconds (100 years)
MAX_DELAY = 100 * YEAR

_registry: dict[str, type["Job"]] = {}


def resolve(wire_name: str) -> type["Job"] | None:
    """The job class a payload names, or None when this process does not know it."""
    return _registry.get(wire_name)


def hooks_of(job_class: type["Job"] | None) -> dict[str, Any]:
    """The hook options a failure of ``job_class`` is decided with (``retry.decide``); none
    for a class this process does not know."""
    return {name: job_class.options.get(name) for name in HOOK_OPTIONS} if job_class else {}


def _register(cls: type["Job"]) -> None:
    qualified = f"{cls.__module__}.{cls.__qualname__}"
    _registry[qualified] = cls
    if cls.name:
        _registry[cls.name] = cls


def validate_options(options: dict[str, Any], where: str, per_call: bool = False) -> None:
    """Reject unknown or ill-typed options where they are written, not when a job fails."""
    for key, value in options.items():
        if key not in KNOWN_OPTIONS:
            known = ", ".join(KNOWN_OPTIONS)
            raise TypeError(f"{where}: unknown job option {key!r} (known: {known})")
        if per_call and key in HOOK_OPTIONS:
            raise TypeError(f"{where}: option {key!r} is code and cannot travel in a payload; "
                            f"set it in the job's own options")
        if value is not None:
            problem = _OPTION_RULES[key](value)
            if problem:
                raise TypeError(f"{where}: option {key!r} must be {problem}, not {value!r}")


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
    return None if is_positive_seconds(value) else "a positive number of seconds"


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
    else "a positive number of seconds (the lock's TTL)",
    "unique_until": lambda value: None if value in unique.UNTIL else "'start' or 'success'",
    "result_ttl": _seconds_rule,
    "soft_time_limit": _seconds_rule,
    "time_limit": _seconds_rule,
    "expires_in": _seconds_rule,
}


def refuse_async_generator(function: Any, name: str) -> None:
    """An async generator would be iterated by nobody: refuse it where it is defined."""
    if inspect.isasyncgenfunction(function):
        raise TypeError(f"{name} is an async generator function (async def with yield); a job "
                        f"must be a plain function or a coroutine function (async def without "
                        f"yield)")


class Arity:
    """How many positional arguments ``perform`` accepts; checked at enqueue, cached per class.

    A payload carries positional arguments only, so a required keyword-only parameter makes
    the job impossible to run."""

    def __init__(self, job_class: type["Job"]) -> None:
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


def _perform_parameters(job_class: type["Job"]) -> list[inspect.Parameter] | None:
    # A decorated function is kept as a staticmethod ``_function``: its own parameters count.
    raw = job_class.__dict__.get("_function") or inspect.getattr_static(job_class, "perform")
    target = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    try:
        # A decorator's own signature, not the one it wraps: it may inject arguments.
        parameters = list(inspect.signature(target, follow_wrapped=False).parameters.values())
    except (TypeError, ValueError):
        return None
    return parameters if isinstance(raw, staticmethod) else parameters[1:]


class Job:
    """Base class: subclass it and define ``perform(self, *args)``."""

    #: default options; merged with the parent class's
    options: dict[str, Any] = {"queue": "default", "retry": True}
    #: a wire name shared with other languages (e.g. "HardJob"); default module.QualifiedName
    name: str | None = None

    #: True when ``perform`` is ``async def``: the worker's event loop runs it (set per class)
    coroutine: bool = False

    #: set on the instance by the processor before perform()
    jid: str
    payload: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        refuse_async_generator(cls.perform, f"{cls.__module__}.{cls.__qualname__}.perform")
        cls.coroutine = inspect.iscoroutinefunction(cls.perform)
        own = cls.__dict__.get("options", {})
        validate_options(own, cls.__qualname__)
        cls.options = {**super(cls, cls).options, **own}
        validate_unique(cls.options, cls.__qualname__)
        _register(cls)

    def perform(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define perform()")

    @classmethod
    def wire_name(cls) -> str:
        return cls.name or f"{cls.__module__}.{cls.__qualname__}"

    @classmethod
    def set(cls, **options: Any) -> "Setter":
        return Setter(cls, options)

    @classmethod
    def perform_async(cls, *args: Any) -> str | None:
        return Setter(cls, {}).perform_async(*args)

    @classmethod
    def perform_in(cls, seconds: float, *args: Any) -> str | None:
        return Setter(cls, {}).perform_in(seconds, *args)

    @classmethod
    def perform_at(cls, timestamp: float, *args: Any) -> str | None:
        return Setter(cls, {}).perform_at(timestamp, *args)

    @classmethod
    def perform_bulk(cls, args_list: Iterable[list], batch_size: int = 1000) -> list[str]:
        return Setter(cls, {}).perform_bulk(args_list, batch_size)

    @classmethod
    async def aperform_async(cls, *args: Any) -> str | None:
        return await Setter(cls, {}).aperform_async(*args)

    @classmethod
    async def aperform_in(cls, seconds: float, *args: Any) -> str | None:
        return await Setter(cls, {}).aperform_in(seconds, *args)

    @classmethod
    async def aperform_at(cls, timestamp: float, *args: Any) -> str | None:
        return await Setter(cls, {}).aperform_at(timestamp, *args)

    @classmethod
    async def aperform_bulk(cls, args_list: Iterable[list], batch_size: int = 1000) -> list[str]:
        return await Setter(cls, {}).aperform_bulk(args_list, batch_size)


class Setter:
    """Per-call options: ``HardJob.set(queue="critical", retry=False).perform_async(1)``."""

    def __init__(self, job_class: type[Job], options: dict[str, Any]) -> None:
        where = f"{job_class.__qualname__}.set()"
        validate_options(options, where, per_call=True)
        validate_unique({**job_class.options, **options}, where)
        self.job_class = job_class
        self.options = options

    def set(self, **options: Any) -> "Setter":
        return Setter(self.job_class, {**self.options, **options})

    def perform_async(self, *args: Any) -> str | None:
        return _client().push(self.job_class, list(args), self.options)

    delay = perform_async

    def perform_in(self, seconds: float, *args: Any) -> str | None:
        now = time.time()
        delay = _finite(seconds, "perform_in", "seconds", self.job_class)
        return self._schedule(now + delay, now, args, "perform_in", seconds)

    def perform_at(self, timestamp: float, *args: Any) -> str | None:
        at = _finite(timestamp, "perform_at", "timestamp", self.job_class)
        return self._schedule(at, time.time(), args, "perform_at", timestamp)

    def _schedule(self, at: float, now: float, args: tuple, method: str, given: Any) -> str | None:
        check_run_at(self.job_class, at, now, method, given)
        return _client().push(self.job_class, list(args), self.options, at=at)

    def perform_bulk(self, args_list: Iterable[list], batch_size: int = 1000) -> list[str]:
        return _client().push_bulk(self.job_class, args_list, self.options, batch_size)

    # --- the asyncio twins, on ``redis.asyncio`` (``aio.py``): they never block the loop

    async def aperform_async(self, *args: Any) -> str | None:
        return await _aio().perform_async(self.job_class, *args, **self.options)

    async def aperform_in(self, seconds: float, *args: Any) -> str | None:
        delay = _finite(seconds, "aperform_in", "seconds", self.job_class)
        return await self.aperform_at(time.time() + delay, *args)

    async def aperform_at(self, timestamp: float, *args: Any) -> str | None:
        return await _aio().perform_at(self.job_class, timestamp, *args, **self.options)

    async def aperform_bulk(self, args_list: Iterable[list], batch_size: int = 1000) -> list[str]:
        return await _aio().perform_bulk(self.job_class, args_list, batch_size, **self.options)


def run_at(job_class: type[Job], timestamp: Any, method: str, now: float) -> float:
    """A scheduled push's run time as a finite float of epoch seconds, at most 100 years
    ahead (a timestamp in milliseconds is refused); shared by the sync and asyncio clients."""
    at = _finite(timestamp, method, "timestamp", job_class)
    check_run_at(job_class, at, now, method, timestamp)
    return at


def check_run_at(job_class: type[Job], at: float, now: float, method: str, given: Any) -> None:
    if at - now > MAX_DELAY:
        raise ValueError(f"{job_class.wire_name()}.{method}: {given!r} is more than 100 "
                         f"years from now (a timestamp in milliseconds? pass epoch seconds)")


def _finite(value: Any, method: str, unit: str, job_class: type[Job]) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{job_class.wire_name()}.{method}: {unit} must be a number, not "
                        f"{value!r} ({type(value).__name__}); for a datetime pass "
                        f"value.timestamp(), for a timedelta value.total_seconds()")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{job_class.wire_name()}.{method}: {unit} is {value!r}; pass a finite "
                         f"number of seconds")
    return number


def _client():
    from . import client

    return client.default()


def _aio():
    from . import aio  # imports redis.asyncio: only for applications that use it

    return aio


class FunctionJob:
    """What ``@forkq.job`` returns: the function, still callable, plus the enqueue methods."""

    def __init__(self, func: Callable[..., Any], job_class: type[Job]) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.job_class = job_class

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        if attribute in ("perform_async", "perform_in", "perform_at", "perform_bulk", "set",
                         "aperform_async", "aperform_in", "aperform_at", "aperform_bulk",
                         "wire_name", "options", "name", "coroutine"):
            return getattr(self.job_class, attribute)
        raise AttributeError(attribute)

    def delay(self, *args: Any) -> str | None:
        return self.job_class.perform_async(*args)


def job(func: Callable[..., Any] | None = None, *, name: str | None = None,
        **options: Any) -> Any:
    """Turn a plain function into a job: ``@forkq.job`` or ``@forkq.job(queue="mailers")``."""

    def wrap(function: Callable[..., Any]) -> FunctionJob:
        refuse_async_generator(function, f"{function.__module__}.{function.__qualname__}")
        if inspect.iscoroutinefunction(function):
            async def perform(self: Job, *args: Any) -> Any:
                return await function(*args)
        else:
            def perform(self: Job, *args: Any) -> Any:
                return function(*args)

        namespace = {"perform": perform, "_function": staticmethod(function),
                     "options": options, "name": name,
                     "__module__": function.__module__, "__qualname__": function.__qualname__,
                     "__doc__": function.__doc__}
        job_class = type(function.__name__, (Job,), namespace)
        return FunctionJob(function, job_class)

    return wrap(func) if func is not None else wrap
