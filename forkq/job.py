"""Jobs: the ``Job`` base class, the ``@job`` decorator and the registry of known jobs.

A job's wire name (``class`` in payloads) is ``module.QualifiedName`` unless it sets ``name``;
then ``name`` is written and the qualified name is still accepted when fetched. The worker runs
only jobs registered here by the modules named in ``require:`` (DESIGN.md §5): a payload never
makes forkq import anything.

Options, per job (``options = {...}`` or decorator keywords) and per call (``Job.set(...)``),
follow the rules of ``options.py``: every option is checked where it is written (class
definition, decoration, ``set()``), and ``perform``'s arity at enqueue.

A job whose ``perform`` is a coroutine function (``async def``, or ``@forkq.job`` on an
``async def``) is a *coroutine job*: the worker runs it on its event loop
(``worker/coroutines.py``), not in a processor thread. Async generator functions are refused at definition. The enqueue
methods have asyncio twins (``aperform_async``...) that delegate to ``aio.py``.
"""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any, Callable, Iterable

from . import client
from .options import HOOK_OPTIONS, check_run_at, finite, validate_options, validate_unique

_registry: dict[str, type["Job"]] = {}


#: ``resolve(wire_name)``: the job class a payload names, or None when this process does not
#: know it (the registry's own ``get``: a C call, once a job)
resolve = _registry.get


def known_names() -> list[str]:
    """Every wire name this process can resolve (for "did you mean" in messages)."""
    return sorted(_registry)


def hooks_of(job_class: type["Job"] | None) -> dict[str, Any]:
    """The hook options a failure of ``job_class`` is decided with (``retry.decide``); none
    for a class this process does not know."""
    return {name: job_class.options.get(name) for name in HOOK_OPTIONS} if job_class else {}


def _register(cls: type["Job"]) -> None:
    qualified = f"{cls.__module__}.{cls.__qualname__}"
    _registry[qualified] = cls
    if cls.name:
        _registry[cls.name] = cls


def refuse_async_generator(function: Any, name: str) -> None:
    """An async generator would be iterated by nobody: refuse it where it is defined."""
    if inspect.isasyncgenfunction(function):
        raise TypeError(f"{name} is an async generator function (async def with yield); a job "
                        f"must be a plain function or a coroutine function (async def without "
                        f"yield)")


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
    #: the worker process's quiet event (None outside a worker), read by ``stopping``
    quiet: Any = None

    @property
    def stopping(self) -> bool:
        """True once the worker process is shutting down (it finishes running jobs until its
        deadline): a long job may stop between steps (``IterableJob`` does)."""
        return self.quiet is not None and self.quiet.is_set()
    #: set by the worker that runs the job: its process's copy of the cancels
    #: (``flow.cancel.CancelView``); None elsewhere
    cancels: Any = None

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

    def cancelled(self) -> bool:
        """Whether this job was cancelled (``forkq.cancel``) while it runs, for a long job to
        check between steps; no round trip (its worker learns of cancels twice a second).
        Always False outside a worker (inline tests, direct calls)."""
        return self.cancels is not None and self.cancels.requested(getattr(self, "jid", None))

    @classmethod
    def wire_name(cls) -> str:
        return cls.name or f"{cls.__module__}.{cls.__qualname__}"

    @classmethod
    def s(cls, *args: Any, **options: Any):
        """A signature: this job with ``args`` and ``options``, for ``forkq.chain`` and
        ``forkq.chord``; as a later chain step it gets the previous step's value first."""
        from .flow.chain import Signature

        return Signature(cls, args, options)

    @classmethod
    def si(cls, *args: Any, **options: Any):
        """An immutable signature: it does not take the previous step's value."""
        from .flow.chain import Signature

        return Signature(cls, args, options, immutable=True)

    @property
    def bid(self) -> str | None:
        """The batch this running job belongs to, or None."""
        return (getattr(self, "payload", None) or {}).get("bid")

    @property
    def batch(self):
        """A block adding jobs to this job's batch (``with self.batch: ...``; the same as
        ``forkq.batch.reopen(self.bid)``), or None when the job is in no batch."""
        from .flow.batch import Batch

        return Batch.reopen(self.bid) if self.bid else None

    @classmethod
    def set(cls, **options: Any) -> "Setter":
        return Setter(cls, options)

    @classmethod
    def perform_async(cls, *args: Any) -> str | None:
        # No per-call options: nothing for a Setter to check (the class's own options were
        # checked at its definition), and one fewer object a push.
        return _client().push(cls, list(args), _NO_OPTIONS)

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


#: the per-call options of a push made without ``set()``; never changed
_NO_OPTIONS: dict[str, Any] = {}


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
        delay = finite(seconds, "perform_in", "seconds", self.job_class)
        return self._schedule(now + delay, now, args, "perform_in", seconds)

    def perform_at(self, timestamp: float, *args: Any) -> str | None:
        at = finite(timestamp, "perform_at", "timestamp", self.job_class)
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
        return await _aio().perform_in(self.job_class, seconds, *args, **self.options)

    async def aperform_at(self, timestamp: float, *args: Any) -> str | None:
        return await _aio().perform_at(self.job_class, timestamp, *args, **self.options)

    async def aperform_bulk(self, args_list: Iterable[list], batch_size: int = 1000) -> list[str]:
        return await _aio().perform_bulk(self.job_class, args_list, batch_size, **self.options)


def _client():
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
