"""What an application plugs into forkq, in one registry per process.

``registry`` holds the client and server middleware chains, the error handlers and the death
handlers. ``forkq.client_middleware``, ``forkq.server_middleware``, ``forkq.error_handlers``
and ``forkq.death_handlers`` all write here; the default client reads its client middleware
from it, and a worker is *given* it when it is built (``worker.Services``) rather than reading
the client's state. Framework integrations register their per-job wrappers here at set-up
(``forkq.contrib.django`` adds a server middleware that closes stale database connections
around each job), before the master preloads the application and forks, so that every child
inherits them; the core has no branch for any framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .middleware import Chain


@dataclass
class Hooks:
    middleware: Chain = field(default_factory=Chain)
    #: callables (exc, context) run when a job raises; context holds job (payload) and queue
    error_handlers: list[Callable] = field(default_factory=list)
    #: callables (payload, exc) run when a job dies (retries exhausted, retry: false or 0, poison)
    death_handlers: list[Callable] = field(default_factory=list)


#: this process's registry
registry = Hooks()
