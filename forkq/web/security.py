"""Who may use the UI and which requests may change anything.

Authentication is HTTP Basic against ``web.username`` and ``web.password_hash`` (config) or
``FORKQ_WEB_USERNAME`` and ``FORKQ_WEB_PASSWORD`` (environment, which wins, as everywhere).
``password_hash`` has the form ``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (salt and hash in
unpadded urlsafe base64); make one with ``python -m forkq.web.security``.

State changes are POSTs that carry a CSRF token equal to the ``forkq_csrf`` cookie (double
submit: a cross-site page can send the cookie but cannot read it to put it in the form; plain
double submit needs no shared secret, so several server processes behind one balancer agree),
and whose ``Sec-Fetch-Site`` and ``Origin``, when the browser sends them, say same origin.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import secrets
from urllib.parse import urlsplit

from ..errors import ConfigError

ALGORITHM = "pbkdf2_sha256"
#: PBKDF2 rounds for new hashes; the count is stored in the hash, so old hashes keep working
ITERATIONS = 600_000
CSRF_COOKIE = "forkq_csrf"
CSRF_FIELD = "csrf"
#: verified Authorization headers remembered, so PBKDF2 runs once per credential, not per request
_MAX_REMEMBERED = 64

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
                          f"<hash>; make one with: python -m forkq.web.security")


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

    def allows(self, authorization: str | None) -> bool:
        if not self.enabled:
            return True
        if not authorization or not authorization.startswith("Basic "):
            return False
        token = hmac.new(self._key, authorization.encode(), "sha256").digest()
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


def same_origin(sec_fetch_site: str | None, origin: str | None, host: str) -> bool:
    """False when the browser says the request came from another site."""
    if sec_fetch_site is not None and sec_fetch_site not in ("same-origin", "none"):
        return False
    if origin and origin != "null":
        return urlsplit(origin).netloc == host
    return origin != "null"


def main() -> None:
    """Prints a password hash for ``web.password_hash``."""
    password = getpass.getpass("Password for the forkq web UI: ")
    if password != getpass.getpass("Again: "):
        raise SystemExit("the passwords differ")
    print(hash_password(password))


if __name__ == "__main__":
    main()
