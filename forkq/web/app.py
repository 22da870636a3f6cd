"""The WSGI application: authentication, read-only mode, CSRF, headers, then a view.

One ``App`` per server process; it is thread-safe (the Redis client pools connections and
the app keeps no per-request state). Values from Redis reach HTML only through Jinja2 with
autoescaping on, and only through templates, where every value shown passes ``visible``: a
queue, class or host name can hold bidirectional overrides or zero-width characters that would
make it look like another name (or reorder the text around it), so they are shown as escapes
(``\u202e``), line by line, as ``forkq.log`` writes them.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import time
from typing import Any, Callable

import jinja2
import redis as redis_py
from markupsafe import Markup, escape

from .. import __version__
from ..api import Api, as_date
from ..config import Config
from ..log import escape_controls
from . import security, views
from .http import MAX_FORM_BYTES, Request, Response, queue_path, segment
from .throttle import LoginThrottle

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
TEMPLATE_DIR = os.path.join(os.path.dirname(__file__), "templates")
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}

log = logging.getLogger("forkq.web")


class App:
    def __init__(self, config: Config, redis_client=None, environ=os.environ) -> None:
        self.read_only = config.web.read_only
        self.api = Api.from_config(config, redis_client, read_only=self.read_only)
        self.auth = security.Auth(config.web, environ)
        self.hosts = security.Hosts(config.web.allowed_hosts, self.auth.enabled)
        self.throttle = LoginThrottle()
        self.router = views.routes()
        self.static = _load_static()
        self.templates = _environment()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        request = Request(environ)
        try:
            response = self.handle(request)
        except Exception:  # a bug in a view still answers as a page: headers and all
            log.exception("web request %s %s failed", request.method, request.path)
            response = _plain(500, "Internal error: the details are in the server's log.")
        response.headers += security.HEADERS
        if not any(name == "Cache-Control" for name, _ in response.headers):
            response.headers.append(security.NO_STORE)
        return response(start_response)

    def handle(self, request: Request) -> Response:
        if not self.hosts.allows(request.host):
            return _plain(400, f"Host {request.host!r} is not served here: use a loopback "
                               f"address or list the name in web.allowed_hosts.")
        refusal = self.authenticate(request)
        if refusal:
            return refusal
        if request.path.startswith("/static/") and request.method in ("GET", "HEAD"):
            return self.static_file(request.path[len("/static/"):])
        handler, arguments, other_method = self.router.match(request.method, request.path)
        if handler is None:
            return self.error(request, 405 if other_method else 404,
                              "Method not allowed" if other_method else "Page not found")
        if request.method == "POST" and request.content_length > MAX_FORM_BYTES:
            return _plain(413, f"Request body over {MAX_FORM_BYTES} bytes refused.")
        refusal = self.refuse_post(request) if request.method == "POST" else None
        if refusal:
            return self.error(request, 403, refusal)
        return self.run(handler, request, arguments)

    def authenticate(self, request: Request) -> Response | None:
        """None when the request may go on; else 401, or 429 while its address guesses."""
        if not self.auth.enabled:
            return None
        authorization = request.header("Authorization")
        if authorization and not self.auth.known(authorization):
            wait = self.throttle.take(request.remote_addr)
            if wait > 0:
                return _plain(429, "Too many wrong passwords from your address: wait "
                                   f"{math.ceil(wait)} s.", [("Retry-After", str(math.ceil(wait)))])
            if self.auth.allows(authorization):
                self.throttle.give_back(request.remote_addr)
                return None
        elif self.auth.allows(authorization):
            return None
        return _plain(401, "Authentication required",
                      [("WWW-Authenticate", 'Basic realm="forkq", charset="UTF-8"')])

    def run(self, handler, request: Request, arguments: dict[str, str]) -> Response:
        request.csrf = request.cookies.get(security.CSRF_COOKIE) or security.new_csrf_token()
        try:
            response = handler(self, request, **arguments)
        except redis_py.RedisError as exc:
            log.warning("web request %s failed: Redis error: %s", request.path, exc)
            response = self.error(request, 503, f"Redis is unavailable: {exc}")
        if request.cookies.get(security.CSRF_COOKIE) != request.csrf:
            response.set_cookie(security.CSRF_COOKIE, request.csrf,
                                request.script_name or "/", request.secure)
        return response

    def refuse_post(self, request: Request) -> str | None:
        """Why a state-changing request is refused, or None to let it through."""
        if self.read_only:
            return "This dashboard is read-only."
        if not self.hosts.same_origin(request.header("Sec-Fetch-Site"),
                                      request.header("Origin"), request.host):
            return "Cross-site request refused."
        if not security.csrf_ok(request.cookies.get(security.CSRF_COOKIE),
                                request.form.get(security.CSRF_FIELD)):
            return "Missing or stale form token: reload the page and try again."
        return None

    def static_file(self, name: str) -> Response:
        body = self.static.get(name)
        if body is None:
            return _plain(404, "Not found")
        content_type = STATIC_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
        return Response(body, 200, content_type, [("Cache-Control", "max-age=300")])

    def render(self, request: Request, template: str, status: int = 200, **context) -> Response:
        page = self.templates.get_template(template).render(
            request=request, url=request.url, queue_url=request.queue_url,
            queue_path=queue_path, read_only=self.read_only, csrf=request.csrf,
            csrf_field=security.CSRF_FIELD, nav=self._nav(), notice=views.notice(request),
            now=time.time(), version=__version__, **context)
        return Response(page, status)

    def error(self, request: Request, status: int, message: str) -> Response:
        try:
            return self.render(request, "error.html", status, code=status, message=message)
        except redis_py.RedisError:
            return _plain(status, message)

    def _nav(self) -> dict[str, int]:
        try:
            return self.api.stats()
        except redis_py.RedisError:
            return {}


def _plain(status: int, message: str, headers=()) -> Response:
    return Response(message + "\n", status, "text/plain; charset=utf-8", headers)


def _load_static() -> dict[str, bytes]:
    """Every static file, read once: the name must be one of these, so no path escapes."""
    files = {}
    for name in os.listdir(STATIC_DIR):
        with open(os.path.join(STATIC_DIR, name), "rb") as handle:
            files[name] = handle.read()
    return files


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined, finalize=visible)
    env.filters.update(number=lambda n: f"{n:,}" if isinstance(n, int) else n,
                       ago=ago, iso=iso, json=_json, pretty=_pretty, duration=duration,
                       segment=segment, date=as_date, breakable=breakable)
    return env


def visible(value: Any) -> Any:
    """What a template shows of ``value``: text with its invisible and control characters
    escaped (newlines kept, for multi-line blocks such as backtraces); markup built by a macro
    or a chart has been through this already."""
    if not isinstance(value, str) or isinstance(value, Markup):
        return value
    return "\n".join(escape_controls(line) for line in value.split("\n"))
def breakable(name: str) -> Markup:
    """A class name, escaped, with a line-break opportunity after each ``.`` and ``::``, so a
    narrow column wraps it between its parts rather than inside a word."""
    text = str(escape(visible(name)))
    return Markup(text.replace("::", "::<wbr>").replace(".", ".<wbr>"))


def iso(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """A length of time in its largest unit, rounded; the sign is dropped (``ago`` says it)."""
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def ago(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "–"
    delta = (now or time.time()) - timestamp
    if abs(delta) < 1:
        return "just now"
    return f"{duration(delta)} ago" if delta > 0 else f"in {duration(delta)}"


def _json(value: Any, limit: int = 160) -> str:
    """``value`` as one line of JSON, cut to ``limit`` characters for a table cell."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)
