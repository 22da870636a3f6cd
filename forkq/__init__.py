"""forkq: background jobs for Python, Sidekiq-compatible, at-least-once by default.

The application side imports only this package's client half (``redis`` and ``json``): no
worker or supervisor code. ``forkq.limiter`` and ``forkq.aio`` (which imports
``redis.asyncio``) are imported at their first use as attributes of the package.
"""

import importlib as _importlib

from .client import configure
from .connection.source import default_source as _default_source
from .hooks import registry as _hooks
from .errors import (Cancelled, ConfigError, Shutdown, SoftTimeLimitExceeded,
                     TimeLimitExceeded, UnknownJobError)
from .flow.batch import Batch as batch
from .flow.batch import status as batch_status
from .flow.chain import Chain as chain
from .flow.chain import Chord as chord
from .job import Job, job

__version__ = "0.1.0"

#: submodules an application reaches as ``forkq.<name>`` without importing them first
_LAZY_MODULES = ("aio", "limiter")

__all__ = ["Job", "job", "configure", "redis", "client_middleware", "server_middleware",
           "error_handlers", "death_handlers", "register_periodic", "result", "aresult",
           "batch", "batch_status", "chain", "chord", "IterableJob",
           "cancel", "Cancelled", "ConfigError", "Shutdown", "SoftTimeLimitExceeded",
           "TimeLimitExceeded", "UnknownJobError", "__version__"]

#: callables (exc, context) run when a job raises; context holds job (payload) and queue
error_handlers: list = _hooks.error_handlers
#: callables (payload, exc) run when a job dies (retries exhausted, retry: false or 0, poison)
death_handlers: list = _hooks.death_handlers


def client_middleware(middleware):
    """Register a client middleware ``(job_class, payload, queue, call_next)``."""
    _hooks.middleware.add_client(middleware)
    return middleware


def server_middleware(middleware):
    """Register a server middleware ``(job, payload, queue, call_next)``."""
    _hooks.middleware.add_server(middleware)
    return middleware


def redis():
    """A redis-py client on forkq's Redis, for jobs and application code.

    In a worker each thread gets a connection of its own (no pool lock between the processor
    threads); elsewhere the process shares one pool of up to 50 connections, which threads
    wait for (``forkq.connection.POOL_WAIT``). Opens the connection on first use."""
    return _default_source().redis


def register_periodic(name, job, *, cron=None, every=None, args=(), queue=None, tz="UTC",
                      missed="once"):
    """Declare a periodic job from code, at import of a module named in ``require:``.

    ``forkq.register_periodic("nightly", Report, cron="30 2 * * *", tz="Europe/Berlin")``;
    the keys mean what they mean in ``forkq.yml``'s ``periodic:`` (``forkq.periodic.register``)."""
    from .periodic import register

    return register(name, job, cron=cron, every=every, args=args, queue=queue, tz=tz,
                    missed=missed)


def result(jid: str, wait: float | None = None):
    """The result of job ``jid`` (``forkq.results.Result``: ``status``, ``value``, ``error``,
    timestamps), or None when it is unknown, expired, or kept none (``result_ttl`` unset).
    ``forkq.errors.ResultRecordError`` names the jid when the record in Redis is not a result.

    ``wait=30`` blocks up to 30 s until the status is final (succeeded, failed, cancelled),
    without polling; a job that keeps no result returns None at once."""
    from . import results

    return results.get(jid, wait=wait)


async def aresult(jid: str, wait: float | None = None):
    """``result`` for coroutines, read on ``redis.asyncio`` (never blocks the event loop)."""
    from . import results

    return await results.aget(jid, wait=wait)


def cancel(jid: str):
    """Cancel job ``jid``; returns where it was found: ``"queued"``, ``"scheduled"``,
    ``"retry"`` (removed), ``"running"`` (a worker holds it: interrupted within about a second,
    or dropped before it starts), or None (found nowhere). See ``forkq.flow.cancel``."""
    from .flow.cancel import cancel as cancel_job

    return cancel_job(jid)


def __getattr__(name: str):
    """``forkq.aio`` and ``forkq.limiter`` after a plain ``import forkq``, imported at first
    use so that a producer that never uses them does not pay for them."""
    if name in _LAZY_MODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    if name == "IterableJob":  # imports the limiter, for its reschedule
        return _importlib.import_module(f"{__name__}.flow.iterable").IterableJob
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
