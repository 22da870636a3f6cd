"""The little HTTP layer the UI needs over raw WSGI: requests, responses, routes.

Every URL the UI writes goes through ``Request.url``, which prefixes ``SCRIPT_NAME``, so the app
works unchanged when mounted under a path inside another WSGI application.
"""

from __future__ import annotations

import http.cookies
import json
import re
from http import HTTPStatus
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, quote, urlencode

#: bytes of form body accepted; forms name jobs by jid, so they are a few short fields
MAX_FORM_BYTES = 1 << 20
#: queue names a path segment cannot carry: browsers resolve ``.`` and ``..`` (even encoded)
_DOT_SEGMENTS = ("", ".", "..")


class Request:
    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.script_name = environ.get("SCRIPT_NAME", "").rstrip("/")
        # WSGI hands PATH_INFO over as latin-1 text of the raw bytes; queue names may be UTF-8,
        # or any bytes at all (kept as surrogates, as the Api's client reads them).
        raw_path = environ.get("PATH_INFO", "") or "/"
        self.path = raw_path.encode("latin-1", "replace").decode("utf-8", "surrogateescape")
        self.query = _first_values(parse_qs(environ.get("QUERY_STRING", ""),
                                            keep_blank_values=True))
        self._form: dict[str, list[str]] | None = None
        #: the CSRF token this response's forms carry; set by the app before a view runs
        self.csrf = ""

    def header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    @property
    def cookies(self) -> dict[str, str]:
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(self.environ.get("HTTP_COOKIE", ""))
        except http.cookies.CookieError:
            return {}
        return {name: morsel.value for name, morsel in jar.items()}

    @property
    def secure(self) -> bool:
        return self.environ.get("wsgi.url_scheme") == "https"

    @property
    def host(self) -> str:
        return self.header("Host") or self.environ.get("SERVER_NAME", "")

    @property
    def remote_addr(self) -> str:
        return self.environ.get("REMOTE_ADDR", "")

    @property
    def content_length(self) -> int:
        try:
            return max(0, int(self.environ.get("CONTENT_LENGTH") or 0))
        except ValueError:
            return 0

    def form_lists(self) -> dict[str, list[str]]:
        if self._form is None:
            length = min(self.content_length, MAX_FORM_BYTES)
            body = self.environ["wsgi.input"].read(length) if length > 0 else b""
            self._form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return self._form

    @property
    def form(self) -> dict[str, str]:
        return _first_values(self.form_lists())

    def int_arg(self, name: str, default: int, low: int = 0, high: int = 10**9) -> int:
        try:
            return max(low, min(high, int(self.query.get(name, default))))
        except ValueError:
            return default

    def url(self, path: str, **params: Any) -> str:
        """An absolute path under this app's mount point, with query parameters."""
        query = urlencode({k: v for k, v in params.items() if v is not None},
                          errors="surrogateescape")
        return self.script_name + path + ("?" + query if query else "")

    def queue_url(self, name: str, **params: Any) -> str:
        """``url`` of the page of queue ``name``, whatever characters the name holds."""
        path, naming = queue_path(name)
        return self.url(path, **naming, **params)


def _first_values(lists: dict[str, list[str]]) -> dict[str, str]:
    return {key: values[0] for key, values in lists.items()}


def segment(value: str) -> str:
    """A value quoted to sit in one path segment."""
    return quote(value, safe="", errors="surrogateescape")


def queue_path(name: str) -> tuple[str, dict[str, str]]:
    """The path and query naming queue ``name``: ``/queues/<name>`` (Sidekiq's layout), or
    ``/queue?name=`` for the names a browser would resolve away (``.``, ``..``, empty)."""
    if name in _DOT_SEGMENTS:
        return "/queue", {"name": name}
    return "/queues/" + segment(name), {}


class Response:
    def __init__(self, body: bytes | str = b"", status: int = 200,
                 content_type: str = "text/html; charset=utf-8",
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        # Text from Redis that is not UTF-8 shows as U+FFFD or "?", never as an error.
        self.body = body.encode("utf-8", "replace") if isinstance(body, str) else body
        self.status = status
        self.headers = [("Content-Type", content_type), *headers]

    def set_cookie(self, name: str, value: str, path: str, secure: bool) -> None:
        cookie = f"{name}={value}; Path={path}; HttpOnly; SameSite=Strict"
        self.headers.append(("Set-Cookie", cookie + ("; Secure" if secure else "")))

    def __call__(self, start_response: Callable) -> list[bytes]:
        phrase = HTTPStatus(self.status).phrase
        headers = self.headers + [("Content-Length", str(len(self.body)))]
        start_response(f"{self.status} {phrase}", headers)
        return [self.body]


def redirect(location: str) -> Response:
    """After a POST: 303 so the browser follows with a GET."""
    return Response(b"", 303, "text/plain", [("Location", location)])


def json_response(data: Any) -> Response:
    return Response(json.dumps(data), 200, "application/json")


class Router:
    """Routes ``(method, pattern)`` to handlers; patterns are regexes with named groups."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = []

    def add(self, method: str, pattern: str, handler: Callable[..., Response]) -> None:
        self.routes.append((method, re.compile(pattern + r"\Z", re.DOTALL), handler))

    def match(self, method: str, path: str) -> tuple[Callable[..., Response] | None, dict, bool]:
        """The handler and its path arguments; the flag says the path exists for another method."""
        other_method = False
        for route_method, pattern, handler in self.routes:
            found = pattern.match(path)
            if found and route_method == method:
                return handler, found.groupdict(), False
            other_method = other_method or bool(found)
        return None, {}, other_method
