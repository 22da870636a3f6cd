"""Who may use the UI and which requests may change anything.

Authentication is HTTP Basic against ``web.username`` and ``web.password_hash`` (config) or
``FORKQ_WEB_USERNAME`` and ``FORKQ_WEB_PASSWORD`` (environment, which wins, as everywhere).
``password_hash`` has the form ``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (salt and hash in
unpadded urlsafe base64); make one with ``forkq web --hash-password`` (``read_new_password``).

State changes are POSTs that carry a CSRF token equal to the ``forkq_csrf`` cookie (double
submit: a cross-site page can send the cookie but cannot read it to put it in the form; plain
double submit needs no shared secret, so several server processes behind one balancer agree),
and whose ``Sec-Fetch-Site`` and ``Origin``, when the browser sends them, say same origin.

DNS rebinding: a page on ``evil.example`` whose name the attacker makes resolve to 127.0.0.1
reaches a loopback UI with ``Host: evil.example`` and ``Origin: http://evil.example``. So
``Hosts`` decides which names the UI answers to at all (every request, before anything else),
and an ``Origin`` must be one of those names too, not merely equal to the request's ``Host``.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import ipaddress
import os
import secrets
import sys
from typing import Iterable
from urllib.parse import urlsplit

from ..errors import ConfigError, ForkqError

ALGORITHM = "pbkdf2_sha256"
#: PBKDF2 rounds for new hashes; the count is stored in the hash, so old hashes keep working
ITERATIONS = 600_000
CSRF_COOKIE = "forkq_csrf"
CSRF_FIELD = "csrf"
#: verified Authorization headers remembered, so PBKDF2 runs once per credential, not per request
_MAX_REMEMBERED = 64

#: on every response, error pages included; ``Cache-Control`` unless the response set its own
NO_STORE = ("Cache-Control", "no-store")
HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def check_hash_format(password_hash: str) -> None:
    parts = password_hash.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM or not parts[1].isdigit():
        raise ConfigError(f"web.password_hash must look like {ALGORITHM}$<iterations>$<salt>$"
                          f"<hash>; make one with: forkq web --hash-password")


def verify_password(password: str, password_hash: str) -> bool:
    _, iterations, salt, expected = password_hash.split("$")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), _unb64(salt), int(iterations))
    return hmac.compare_digest(digest, _unb64(expected))


class Auth:
    """HTTP Basic credentials from the config and environment; ``enabled`` when any are set."""

    def __init__(self, web_config, environ=os.environ) -> None:
        self.username = environ.get("FORKQ_WEB_USERNAME") or web_config.username
        self.password = environ.get("FORKQ_WEB_PASSWORD")
        self.password_hash = None if self.password else web_config.password_hash
        self._remembered: set[bytes] = set()
        self._key = os.urandom(32)
        has_secret = bool(self.password or self.password_hash)
        if bool(self.username) != has_secret:
            raise ConfigError("web UI: set both a username (web.username or FORKQ_WEB_USERNAME) "
                              "and a password (web.password_hash or FORKQ_WEB_PASSWORD), or "
                              "neither")
        if self.password_hash:
            check_hash_format(self.password_hash)

    @property
    def enabled(self) -> bool:
        return bool(self.username)

    def known(self, authorization: str) -> bool:
        """Credentials this process has verified before (checked without PBKDF2)."""
        return self._token(authorization) in self._remembered

    def _token(self, authorization: str) -> bytes:
        return hmac.new(self._key, authorization.encode(), "sha256").digest()

    def allows(self, authorization: str | None) -> bool:
        if not self.enabled:
            return True
        if not authorization or not authorization.startswith("Basic "):
            return False
        token = self._token(authorization)
        if token in self._remembered:
            return True
        if not self._check(authorization[6:]):
            return False
        if len(self._remembered) >= _MAX_REMEMBERED:
            self._remembered.clear()
        self._remembered.add(token)
        return True

    def _check(self, encoded: str) -> bool:
        try:
            username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        if self.password is not None:
            password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        else:
            password_ok = verify_password(password, self.password_hash)
        return user_ok and password_ok


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(cookie: str | None, submitted: str | None) -> bool:
    return bool(cookie and submitted) and hmac.compare_digest(cookie.encode(), submitted.encode())


def is_loopback(host: str) -> bool:
    """``localhost``, any 127.x address or ``::1`` (no port, no brackets)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(netloc: str) -> str | None:
    """The lower-case name of ``host[:port]`` or ``[v6][:port]``; None when malformed."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        name, bracket, port = netloc[1:].partition("]")
        port = port[1:] if port.startswith(":") else port
        if not bracket:
            return None
    else:
        name, _, port = netloc.partition(":")
    if not name or (port and not port.isdigit()):
        return None
    return name.rstrip(".") or None


class Hosts:
    """The names in ``Host`` and ``Origin`` the UI accepts.

    Loopback names always; the names in ``web.allowed_hosts`` (any port); and any name when
    authentication is on and ``allowed_hosts`` is empty (a rebinding page cannot log in: the
    browser keeps Basic credentials per origin)."""

    def __init__(self, allowed: Iterable[str], authenticated: bool) -> None:
        self.listed = {name for name in map(host_name, allowed) if name}
        self.any = authenticated and not self.listed

    def allows(self, netloc: str) -> bool:
        name = host_name(netloc)
        return name is not None and (self.any or is_loopback(name) or name in self.listed)

    def same_origin(self, sec_fetch_site: str | None, origin: str | None, host: str) -> bool:
        """False when the browser says the request came from another site.

        A present ``Origin`` must be an accepted name, and either the request's own ``Host``
        or a listed name (a reverse proxy may rewrite ``Host``)."""
        if sec_fetch_site is not None and sec_fetch_site not in ("same-origin", "none"):
            return False
        if origin is None:
            return True
        netloc = urlsplit(origin).netloc if origin != "null" else ""
        if not self.allows(netloc):
            return False
        return netloc.lower() == host.lower() or host_name(netloc) in self.listed


def read_new_password(stdin=None) -> str:
    """The password to hash: typed twice without echo on a terminal, else the first line of
    standard input (for scripts: ``printf '%s\\n' "$PW" | forkq web --hash-password``)."""
    stdin = sys.stdin if stdin is None else stdin
    try:
        if stdin.isatty():
            password = getpass.getpass("Password for the forkq web UI: ")
            if password != getpass.getpass("Again: "):
                raise ForkqError("web --hash-password: the two passwords differ; nothing printed")
        else:
            password = stdin.readline().rstrip("\r\n")
    except (EOFError, KeyboardInterrupt):
        raise ForkqError("web --hash-password: cancelled; nothing printed") from None
    if not password:
        raise ForkqError("web --hash-password: the password is empty (on a terminal, type it; "
                          "in a script, pipe it in on the first line of standard input)")
    return password

