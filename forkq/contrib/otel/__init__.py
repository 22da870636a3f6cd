"""OpenTelemetry tracing of forkq's jobs: ``ForkqInstrumentor``.

Installed with ``pip install 'forkq[otel]'``; nothing in forkq imports this package unless the
application or ``opentelemetry-instrument`` does. ``ForkqInstrumentor`` is registered under
the ``opentelemetry_instrumentor`` entry point, so ``opentelemetry-instrument forkq start -c
forkq.yml`` traces with no code change; ``ForkqInstrumentor().instrument()`` does the same
from code. Either way it registers forkq's middleware (``spans.py``) in the process's hooks
(``forkq.hooks.registry``): a client middleware, a bulk middleware, a server middleware, and a
child-exit hook. Instrumented in the master before it forks (``opentelemetry-instrument``, or
a module under ``require:``), every worker child inherits them.

The prefork: the SDK's span processors re-create their export threads in each forked child
(``os.register_at_fork`` in the SDK), and a child flushes its spans in the child-exit hook,
since it ends with ``os._exit``, which skips the SDK's ``atexit`` flush. Not instrumented,
forkq registers nothing: a job runs with no middleware at all.
"""

from __future__ import annotations

from typing import Any, Collection

try:
    from opentelemetry import trace
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
except ImportError as missing:
    raise ImportError(f"forkq.contrib.otel needs opentelemetry-api and "
                      f"opentelemetry-instrumentation ({missing}); install them with "
                      f"pip install 'forkq[otel]'") from missing

from ... import __version__, hooks
from .spans import SYSTEM, Tracing

__all__ = ["ForkqInstrumentor", "SYSTEM"]

#: milliseconds a child waits for its spans to be exported before it exits
FLUSH_TIMEOUT_MS = 5000


class ForkqInstrumentor(BaseInstrumentor):
    """Traces enqueues and runs of forkq jobs in this process (and children it forks)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        # forkq instruments itself: the library is there whenever this class is. Naming it
        # would make instrument() refuse to run from a checkout that is not pip-installed.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        provider = kwargs.get("tracer_provider")
        tracing = Tracing(trace.get_tracer(__name__, __version__, provider), provider)
        middleware = hooks.registry.middleware
        self._registered = [(middleware.client, tracing.send),
                            (middleware.bulk, tracing.send_bulk),
                            (middleware.server, tracing.process),
                            (hooks.registry.child_exit, lambda: _flush(provider))]
        for chain, hook in self._registered:
            chain.append(hook)

    def _uninstrument(self, **kwargs: Any) -> None:
        for chain, hook in self._registered:
            if hook in chain:
                chain.remove(hook)
        self._registered = []


def _flush(provider) -> None:
    """Export the spans this process still holds (the SDK's provider has ``force_flush``; the
    API's no-op one has nothing to flush)."""
    provider = provider if provider is not None else trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush(FLUSH_TIMEOUT_MS)
