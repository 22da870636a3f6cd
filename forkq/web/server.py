"""``forkq web``: the UI on the standard library's threaded wsgiref server.

Fine for an admin tool used by a few people; behind heavy traffic, mount ``forkq.web.app`` in
a production WSGI server instead. Without authentication it binds only to loopback.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import socketserver
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from ..config import Config
from ..errors import ConfigError
from .app import App
from .security import Auth

log = logging.getLogger("forkq.web")


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    """Request lines go to the forkq.web logger at debug level, not to stderr."""

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def parse_bind(bind: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or ``:port``."""
    host, port = bind, default_port
    if bind.startswith("["):
        host, _, rest = bind[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif bind.count(":") == 1:
        host, _, port_text = bind.partition(":")
        port = int(port_text)
    return host or "0.0.0.0", port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(config: Config, bind: str | None = None, redis_client=None) -> WSGIServer:
    """A bound server, not yet serving; refuses a non-loopback address without auth."""
    host, port = parse_bind(bind or f"{config.web.bind}:{config.web.port}", config.web.port)
    if not is_loopback(host) and not Auth(config.web).enabled:
        raise ConfigError(
            f"forkq web: refusing to listen on {host}:{port} without authentication; set "
            f"web.username and web.password_hash (python -m forkq.web.security makes one) or "
            f"FORKQ_WEB_USERNAME and FORKQ_WEB_PASSWORD, or bind to 127.0.0.1")
    server_class = ThreadingWSGIServer
    if ":" in host:
        server_class = type("ThreadingWSGIServer6", (ThreadingWSGIServer,),
                            {"address_family": socket.AF_INET6})
    server = server_class((host, port), QuietHandler)
    server.set_app(App(config, redis_client))
    return server


def serve(config: Config, bind: str | None = None) -> None:
    """Serves until interrupted; ``bind`` defaults to ``web.bind`` and ``web.port``."""
    server = make_server(config, bind)
    host, port = server.server_address[:2]
    log.info("forkq web listening on http://%s:%s/", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
