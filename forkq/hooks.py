"""What an application plugs into forkq, in one registry per process: middleware and handlers.

``registry`` holds the client, bulk and server middleware chains, the error handlers, the death
handlers and the child-exit hooks. ``forkq.client_middleware``, ``forkq.server_middleware``,
``forkq.error_handlers`` and ``forkq.death_handlers`` all write here; the default client reads
its client and bulk middleware from it, and a worker is *given* it when it is built
(``worker.Services``) rather than reading the client's state. Framework integrations register
their per-job wrappers here at set-up (``forkq.contrib.django`` adds a server middleware that
closes stale database connections around each job), before the master preloads the
application and forks, so that every child inherits them; the core has no branch for any
framework (nor for tracing or error trackers: ``forkq.contrib.otel`` and
``forkq.contrib.sentry`` register here too).

A middleware is a callable ``(job, payload, queue, call_next)``. Client middleware runs at
enqueue with the job class; returning without calling ``call_next`` (or returning None/False)
stops the push. Server middleware runs in the processor thread around ``perform`` with the job
instance; an exception it raises is the job's failure. With no middleware the job is called
directly, at no cost.

A bulk middleware is a callable ``(job_class, fields, queue, call_next)`` run once around a
whole bulk push (``perform_bulk``) before any of its jobs is built: what it puts in the dict
``fields`` is merged into every payload of the push, before the client middleware sees each
one; it must return what ``call_next()`` returns (the jids). For an asyncio bulk push
(``forkq.aio.perform_bulk``), ``call_next()`` returns the push's coroutine, not yet started:
the middleware returns an awaitable of the jids (that coroutine, or one awaiting it). With
none registered, a bulk push runs as before.

Middleware is synchronous. For a coroutine job it runs in the worker's event loop thread when
the job starts, and ``call_next()`` returns the job's coroutine, which the runner awaits once
the chain has returned (``worker/coroutines.py``); a middleware that acts after the job
returns a coroutine awaiting it. Middleware must not block there: it would stall every
coroutine job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

Middleware = Callable[[Any, dict, str, Callable[[], Any]], Any]


class Chain:
    """The client and the server middleware, each run in the order added."""

    def __init__(self) -> None:
        self.client: list[Middleware] = []
        self.server: list[Middleware] = []
        self.bulk: list[Middleware] = []

    def add_client(self, middleware: Middleware) -> None:
        self.client.append(middleware)

    def add_server(self, middleware: Middleware) -> None:
        self.server.append(middleware)

    def add_bulk(self, middleware: Middleware) -> None:
        self.bulk.append(middleware)

    def invoke_client(self, job_class: Any, payload: dict, queue: str,
                      call: Callable[[], Any]) -> Any:
        return _invoke(self.client, job_class, payload, queue, call)

    def invoke_server(self, job: Any, payload: dict, queue: str, call: Callable[[], Any]) -> Any:
        return _invoke(self.server, job, payload, queue, call)

    def invoke_bulk(self, job_class: Any, fields: dict, queue: str,
                    call: Callable[[], Any]) -> Any:
        return _invoke(self.bulk, job_class, fields, queue, call)


def _invoke(chain: list[Middleware], subject: Any, payload: dict, queue: str,
            call: Callable[[], Any]) -> Any:
    if not chain:
        return call()

    def step(index: int) -> Any:
        if index == len(chain):
            return call()
        return chain[index](subject, payload, queue, lambda: step(index + 1))

    return step(0)


@dataclass
class Hooks:
    middleware: Chain = field(default_factory=Chain)
    #: callables (exc, context) run when a job raises; context holds job (payload) and queue
    error_handlers: list[Callable] = field(default_factory=list)
    #: callables (payload, exc) run when a job dies (retries exhausted, retry: false or 0, poison)
    death_handlers: list[Callable] = field(default_factory=list)
    #: callables () run in a forked child just before it ends with ``os._exit``, which skips
    #: ``atexit``: what an integration buffers (spans, events) is flushed here
    child_exit: list[Callable[[], Any]] = field(default_factory=list)


#: this process's registry
registry = Hooks()
