"""``forkq web``: the UI on the standard library's threaded wsgiref server.

Fine for an admin tool used by a few people; behind heavy traffic, mount ``forkq.web.app`` in
a production WSGI server instead. Without authentication it binds only to loopback.

A connection that sends nothing for ``IDLE_TIMEOUT`` seconds is closed, so idle or trickling
clients cannot hold the server's threads. Errors the HTTP layer answers itself (a request line
or header too long: 414, 431) carry the same security headers as the app's pages.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from ..config import Config, parse_bind
from ..errors import ConfigError
from .app import App
from .security import HEADERS, NO_STORE, Auth, is_loopback

log = logging.getLogger("forkq.web")

#: seconds a connection may stay silent (before or within a request) before it is closed
IDLE_TIMEOUT = 5.0


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that went silent or away is routine: one debug line, no traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (TimeoutError, ConnectionError)):
            log.debug("web connection from %s dropped: %s", client_address[0], error)
        else:
            super().handle_error(request, client_address)


class QuietHandler(WSGIRequestHandler):
    """Request lines go to the forkq.web logger at debug level, not to stderr."""

    timeout = IDLE_TIMEOUT
    #: set while the HTTP layer answers an error, so ``end_headers`` adds the security headers
    _answering_error = False

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        self._answering_error = True
        super().send_error(code, message, explain)

    def end_headers(self) -> None:
        if self._answering_error:
            for name, value in HEADERS + [NO_STORE]:
                self.send_header(name, value)
        super().end_headers()


def make_server(config: Config, bind: str | None = None, redis_client=None) -> WSGIServer:
    """A bound server, not yet serving; refuses a non-loopback address without auth."""
    host, port = (parse_bind(bind, config.web.port, "web bind address",
                             default_host=config.web.bind) if bind
                  else (config.web.bind, config.web.port))
    if not is_loopback(host) and not Auth(config.web).enabled:
        raise ConfigError(
            f"forkq web: refusing to listen on {host}:{port} without authentication; set "
            f"web.username and web.password_hash (forkq web --hash-password makes one) or "
            f"FORKQ_WEB_USERNAME and FORKQ_WEB_PASSWORD, or bind to 127.0.0.1")
    server_class = ThreadingWSGIServer
    if ":" in host:
        server_class = type("ThreadingWSGIServer6", (ThreadingWSGIServer,),
                            {"address_family": socket.AF_INET6})
    server = server_class((host, port), QuietHandler)
    server.set_app(App(config, redis_client))
    return server


def listening_line(server: WSGIServer) -> str:
    """``forkq web: listening on http://127.0.0.1:7433/ (read-only, no authentication)``."""
    host, port = server.server_address[:2]
    app = server.get_app()
    mode = "read-only" if app.read_only else "read-write"
    auth = "HTTP Basic authentication" if app.auth.enabled else "no authentication"
    shown = f"[{host}]" if ":" in host else host
    return f"forkq web: listening on http://{shown}:{port}/ ({mode}, {auth})"


def serve(config: Config, bind: str | None = None) -> None:
    """Serves until interrupted; ``bind`` defaults to ``web.bind`` and ``web.port``.

    Says where it listens on stderr, whatever the log level: it is the one line a person
    starting the UI needs."""
    server = make_server(config, bind)
    print(listening_line(server), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
