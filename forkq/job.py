"""Jobs: the ``Job`` base class, the ``@job`` decorator and the registry of known jobs.

A job's wire name (``class`` in payloads) is ``module.QualifiedName`` unless it sets ``name``;
then ``name`` is written and the qualified name is still accepted when fetched. The worker runs
only jobs registered here by the modules named in ``require:`` (DESIGN.md §5): a payload never
makes forkq import anything.

Options, per job (``options = {...}`` or decorator keywords) and per call (``Job.set(...)``):
data options travel in the payload (``queue``, ``retry``, ``retry_queue``, ``dead``,
``backtrace``); hooks stay in the process (``retry_in``, ``retry_on``, ``retries_exhausted``).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Iterable

#: options written into every payload
DATA_OPTIONS = ("queue", "retry", "retry_queue", "dead", "backtrace", "tags")
#: options that are code, kept in the worker's registry and never serialised
HOOK_OPTIONS = ("retry_in", "retry_on", "retries_exhausted")

_registry: dict[str, type["Job"]] = {}


def resolve(wire_name: str) -> type["Job"] | None:
    """The job class a payload names, or None when this process does not know it."""
    return _registry.get(wire_name)


def _register(cls: type["Job"]) -> None:
    qualified = f"{cls.__module__}.{cls.__qualname__}"
    _registry[qualified] = cls
    if cls.name:
        _registry[cls.name] = cls


def validate_options(options: dict[str, Any], where: str) -> None:
    """Reject unknown or ill-typed options where they are written, not when a job fails."""
    for key, value in options.items():
        if key not in DATA_OPTIONS and key not in HOOK_OPTIONS:
            known = ", ".join(DATA_OPTIONS + HOOK_OPTIONS)
            raise TypeError(f"{where}: unknown job option {key!r} (known: {known})")
    queue = options.get("queue")
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise TypeError(f"{where}: option 'queue' must be a non-empty string, not {queue!r}")
    retry = options.get("retry")
    if retry is not None and not (isinstance(retry, bool) or (isinstance(retry, int) and retry >= 0)):
        raise TypeError(f"{where}: option 'retry' must be true, false or a count >= 0, not {retry!r}")
    backtrace = options.get("backtrace")
    if backtrace is not None and not (isinstance(backtrace, bool) or isinstance(backtrace, int)):
        raise TypeError(f"{where}: option 'backtrace' must be true, false or a line count")
    for hook in ("retry_in", "retries_exhausted"):
        if options.get(hook) is not None and not callable(options[hook]):
            raise TypeError(f"{where}: option {hook!r} must be callable")


class Job:
    """Base class: subclass it and define ``perform(self, *args)``."""

    #: default options; merged with the parent class's
    options: dict[str, Any] = {"queue": "default", "retry": True}
    #: a wire name shared with other languages (e.g. "HardJob"); default module.QualifiedName
    name: str | None = None

    #: set on the instance by the processor before perform()
    jid: str
    payload: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("options", {})
        validate_options(own, cls.__qualname__)
        cls.options = {**super(cls, cls).options, **own}
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


class Setter:
    """Per-call options: ``HardJob.set(queue="critical", retry=False).perform_async(1)``."""

    def __init__(self, job_class: type[Job], options: dict[str, Any]) -> None:
        validate_options(options, f"{job_class.__qualname__}.set()")
        self.job_class = job_class
        self.options = options

    def set(self, **options: Any) -> "Setter":
        return Setter(self.job_class, {**self.options, **options})

    def perform_async(self, *args: Any) -> str | None:
        return _client().push(self.job_class, list(args), self.options)

    delay = perform_async

    def perform_in(self, seconds: float, *args: Any) -> str | None:
        return self.perform_at(time.time() + float(seconds), *args)

    def perform_at(self, timestamp: float, *args: Any) -> str | None:
        return _client().push(self.job_class, list(args), self.options, at=float(timestamp))

    def perform_bulk(self, args_list: Iterable[list], batch_size: int = 1000) -> list[str]:
        return _client().push_bulk(self.job_class, args_list, self.options, batch_size)


def _client():
    from . import client

    return client.default()


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
                         "wire_name", "options", "name"):
            return getattr(self.job_class, attribute)
        raise AttributeError(attribute)

    def delay(self, *args: Any) -> str | None:
        return self.job_class.perform_async(*args)


def job(func: Callable[..., Any] | None = None, *, name: str | None = None,
        **options: Any) -> Any:
    """Turn a plain function into a job: ``@forkq.job`` or ``@forkq.job(queue="mailers")``."""

    def wrap(function: Callable[..., Any]) -> FunctionJob:
        def perform(self: Job, *args: Any) -> Any:
            return function(*args)

        namespace = {"perform": perform, "options": options, "name": name,
                     "__module__": function.__module__, "__qualname__": function.__qualname__,
                     "__doc__": function.__doc__}
        job_class = type(function.__name__, (Job,), namespace)
        return FunctionJob(function, job_class)

    return wrap(func) if func is not None else wrap
