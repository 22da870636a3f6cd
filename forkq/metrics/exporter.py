"""The exporter process: ``/metrics`` and ``/healthz`` over HTTP on ``metrics.bind:port``.

The master forks it and supervises it like a worker child; it may use threads and Redis because
nothing is forked from it. Its main thread waits on signals while a threaded HTTP server answers:
TERM or INT stop it (exit 0), USR2 (relayed by the master) reopens log files, and TSTP, TTIN and
HUP, which reach it when sent to the whole process group (Ctrl-Z, a closed terminal), are
ignored, since their default action would stop or end it.

A connection that sends nothing for ``IDLE_TIMEOUT`` seconds is closed: each connection holds
a thread, and a scraper sends its request at once.

A port that cannot be bound is a configuration problem, not a crash: the exporter logs a warning
and returns (exit 0). The supervisor restarts the exporter only when it exits non-zero or by a
signal (``children.Helper``): one that exited 0 has either been told to stop or cannot listen,
and restarting it would be a crash loop on a port someone else holds.
"""

from __future__ import annotations

import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from .. import log
from ..log import logger
from ..signals import SignalQueue
from . import store
from .collector import Collector, health

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
IGNORED_SIGNALS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGHUP)
#: seconds a connection may stay silent before it is closed
IDLE_TIMEOUT = 5.0


def run_exporter(config) -> None:
    """Serve until TERM or INT; returns at once when the port is disabled or unavailable."""
    if config.metrics.port is None:
        return
    server = _listen(config)
    if server is None:
        return
    signals = SignalQueue()
    signals.install(STOP_SIGNALS + (signal.SIGUSR2,))
    for signum in IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    logger.info("metrics exporter listening on http://%s:%d/metrics", host, port)
    try:
        _wait_for_stop(signals)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    logger.info("metrics exporter stopped")


def _wait_for_stop(signals: SignalQueue) -> None:
    while True:
        for signum in signals.wait(timeout=1.0):
            if signum in STOP_SIGNALS:
                return
            if signum == signal.SIGUSR2:
                log.reopen()


def _listen(config) -> ThreadingHTTPServer | None:
    bind, port = config.metrics.bind, config.metrics.port
    directory = os.environ.get(store.ENV)
    try:
        server = ThreadingHTTPServer((bind, port), _Handler)
    except OSError as exc:
        logger.warning("metrics exporter disabled: cannot listen on %s:%d (%s); free the port "
                       "or set metrics.port (null turns metrics off)", bind, port, exc)
        return None
    server.daemon_threads = True
    server.collector = Collector(config, directory)
    server.registry = CollectorRegistry(auto_describe=False)
    server.registry.register(server.collector)
    return server


class _Handler(BaseHTTPRequestHandler):
    server_version = "forkq-metrics"
    timeout = IDLE_TIMEOUT

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            healthy, reason = health(*self.server.collector.read())
            self._reply(200 if healthy else 503, (reason + "\n").encode())
        else:
            self._reply(404, b"not found: try /metrics or /healthz\n")

    def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        # Prometheus scrapes every few seconds: a line per request would drown the log.
        logger.debug("metrics http: " + format, *args)
