"""The web UI: Sidekiq's pages over forkq's Redis, as a WSGI application.

- ``forkq.web.app``: a module-level WSGI callable; reads the config file every command reads
  (``FORKQ_CONFIG``, else ``./forkq.yml``) at its first request (mount it in Django, Flask or
  any WSGI server).
- ``forkq.web.make_app(config, redis_client=None)``: an app for a config you hold.
- ``forkq.web.serve(config, bind=None)``: standalone server (``forkq web``), threaded wsgiref.
- ``forkq web --hash-password``: prints a ``web.password_hash`` for a password.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from .app import App
from .security import hash_password
from .server import make_server, serve

__all__ = ["app", "make_app", "serve", "make_server", "hash_password"]


def make_app(config, redis_client=None) -> App:
    return App(config, redis_client)


class _LazyApp:
    """Builds the real app on the first request, so importing this module reads no config."""

    def __init__(self) -> None:
        self._app: App | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from .. import config

                    self._app = make_app(config.load(config.default_path()))
        return self._app(environ, start_response)


app = _LazyApp()
