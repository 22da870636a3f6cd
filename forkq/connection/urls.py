"""Redis URLs: what they say (``parse``) and how to show them without their secrets (``redact``).

Pure functions, used wherever a client is made (``connection/__init__.py``) and wherever a URL reaches a
log line or an error message; the one side effect is a warning, once per process and URL (a
forked child inherits what its parent said), for a URL that turns certificate checks off.
Four schemes:

- ``redis://[user:password@]host:port/db``, ``unix://[user:password@]/path?db=N``: plain;
- ``rediss://...``: TLS, with redis-py's query parameters ``ssl_ca_certs``, ``ssl_certfile``,
  ``ssl_keyfile``, ``ssl_cert_reqs`` (``required``, ``optional``, ``none``), ``ssl_check_hostname``;
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]`` (and
  ``rediss+sentinel://`` for TLS to the sentinels and the servers alike), plus
  ``sentinel_username`` / ``sentinel_password`` when the sentinels ask for their own login;
- ``redis+cluster://[user:password@]host:port[,host:port...][/0]`` (``rediss+cluster://`` for
  TLS): a Redis Cluster, reached through any of the nodes listed (``layout: cluster``).

Any of them may carry forkq's own ``wait_replicas=N`` and ``wait_timeout=SECONDS``: writes
then wait until N replicas confirmed them (``connection/__init__.py``). Every other query parameter is
one redis-py reads (``socket_timeout``...); an unknown one is refused, naming it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from redis.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url

from ..log import logger
from ..values import is_positive_seconds, too_long

#: query parameters that are seconds: a socket timeout of 0 would make the socket non-blocking
_SECONDS = frozenset({"socket_timeout", "socket_connect_timeout"})
#: seconds ``wait_replicas`` waits for the replicas when ``wait_timeout`` is not given
DEFAULT_WAIT_TIMEOUT = 1.0
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_SCHEMES = ("redis", "rediss", "unix") + SENTINEL_SCHEMES + CLUSTER_SCHEMES
_SSL_PARAMETERS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile",
                   "ssl_cert_reqs", "ssl_password", "ssl_ciphers")
_CONNECTION_PARAMETERS = frozenset(URL_QUERY_ARGUMENT_PARSERS) | {
    "client_name", "lib_name", "lib_version"} | set(_SSL_PARAMETERS)
_SENTINEL_LOGIN = ("sentinel_username", "sentinel_password")
#: a query parameter, its name and its value (a value ends at the next ``&`` or ``#``)
_PARAMETER = re.compile(r"(^|[?&#])([^=&#?]*)=([^&#]*)")
#: a parameter name (decoded, any case) that says its value is a secret: ``password``,
#: ``sentinel_password``, ``ssl_password``, and the misspellings a user may try
_SECRET_NAME = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)
#: what may follow the login: a host list, then the end, a path, a query or a fragment
_HOSTS = re.compile(r"[\w.\-:\[\],%]*(?:$|[/?#])")
#: ``ssl_cert_reqs`` values redis-py knows
_CERT_REQS = ("required", "optional", "none")
#: URLs (as shown) whose ``ssl_cert_reqs=none`` this process warned about
_warned: set[str] = set()
_warned_lock = threading.Lock()


class RedisURLError(ValueError):
    """A Redis URL forkq cannot use; the message names it (password hidden) and the fix."""

    def __init__(self, url: str, reason: str, hide: tuple[str, ...] = ()) -> None:
        super().__init__(f"Redis URL {redact(url, hide)}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Sentinels:
    """Where to ask for the primary of ``service``, and how to log in to the sentinels."""

    addresses: tuple[tuple[str, int], ...]
    service: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A parsed URL: keyword arguments for a redis-py connection, sentinels where used, and
    how many replicas a write waits for (0: none)."""

    url: str
    options: dict
    sentinels: Sentinels | None = None
    wait_replicas: int = 0
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    #: the cluster nodes to start from, for a ``redis+cluster://`` URL
    cluster: tuple[tuple[str, int], ...] | None = None

    @property
    def shown(self) -> str:
        return redact(self.url)


class ShowsURL:
    """A connection mixin: errors name the URL (passwords hidden), not only host and port."""

    def __init__(self, **kwargs):
        self.shown_url = kwargs.pop("shown_url", "")
        super().__init__(**kwargs)

    def _error_message(self, exception):
        return f"{self.shown_url}: {super()._error_message(exception)}"


def redact(url: str, hide: tuple[str, ...] = ()) -> str:
    """``url`` with its passwords replaced by ``***``, fit for a log line or an error.

    The login ends at the last ``@`` that a host list follows (up to the next ``/``, ``?`` or
    ``#``), so a password with an unescaped ``@``, ``/``, ``?`` or ``#`` is hidden whole. A
    query parameter is hidden when its name, decoded, looks like a secret's (``password=``,
    ``PASSWORD=``, ``pass%77ord=``) or is one of ``hide`` (names forkq does not know, whose
    value may be anything); when in doubt more is hidden, never less."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return _hide_values(url, hide)
    at = _login_end(rest)
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        rest = f"{user}{colon and ':***'}@{rest[at + 1:]}"
    return f"{scheme}://" + _hide_values(rest, hide)


def _hide_values(text: str, hide: tuple[str, ...]) -> str:
    def hidden(match: re.Match) -> str:
        name = unquote_plus(match[2])
        if _SECRET_NAME.search(name) or name in hide:
            return f"{match[1]}{match[2]}=***"
        return match[0]
    return _PARAMETER.sub(hidden, text)


def _login_end(rest: str) -> int:
    """Index of the ``@`` that ends the login in ``rest`` (the URL after ``://``), or -1."""
    last = -1
    at = rest.rfind("@")
    while at >= 0:
        last = at if last < 0 else last
        if _HOSTS.match(rest, at + 1):
            return at
        at = rest.rfind("@", 0, at)
    return last


def parse(url: str) -> Target:
    scheme = url.partition("://")[0].lower()
    if scheme not in _SCHEMES:
        raise RedisURLError(url, f"unknown scheme {scheme!r}; use one of "
                            f"{', '.join(s + '://' for s in _SCHEMES)}")
    query = _query(url)
    _refuse_unknown(url, set(query) - _CONNECTION_PARAMETERS - set(_SENTINEL_LOGIN)
                    - {"wait_replicas", "wait_timeout"})
    replicas, timeout = _wait_settings(url, query.pop("wait_replicas", None),
                                       query.pop("wait_timeout", None))
    cert_reqs = query.get("ssl_cert_reqs")
    if cert_reqs is not None and cert_reqs.lower() not in _CERT_REQS:
        raise RedisURLError(url, f"ssl_cert_reqs={cert_reqs!r} is not valid; use "
                            f"{', '.join(_CERT_REQS)}")
    if cert_reqs is not None and cert_reqs.lower() == "none":
        _warn_unverified(url)
    if scheme in SENTINEL_SCHEMES:
        if "db" in query:
            raise RedisURLError(url, "a sentinel URL takes its db in the path "
                                "(/service_name/db), not as db= in the query")
        options, sentinels = _sentinel_target(url, scheme, query)
    elif scheme in CLUSTER_SCHEMES:
        options, nodes = _cluster_target(url, scheme, query)
        return Target(url, options, None, replicas, timeout, nodes)
    else:
        if set(query) & set(_SENTINEL_LOGIN):
            raise RedisURLError(url, "sentinel_* parameters need a "
                                "redis+sentinel:// URL")
        options, sentinels = _plain_options(url, query), None
    return Target(url, options, sentinels, replicas, timeout)


def _warn_unverified(url: str) -> None:
    shown = redact(url)
    with _warned_lock:
        if shown in _warned:
            return
        _warned.add(shown)
    logger.warning("Redis URL %s: with ssl_cert_reqs=none the server's certificate is not "
                   "verified: anyone on the network path can pose as the server and read the "
                   "jobs and the password; for tests only (give ssl_ca_certs instead)", shown)


def _query(url: str) -> dict:
    """The query parameters, read after the login: in a password with an unescaped ``?``,
    what follows it is not a query (its text must not come back as a parameter's name)."""
    rest = url.partition("://")[2]
    return dict(parse_qsl(urlsplit("//" + rest[_login_end(rest) + 1:]).query))


def _refuse_unknown(url: str, unknown: set[str]) -> None:
    """Refuse the first unknown parameter; the message hides the values of all of them."""
    if not unknown:
        return
    first = sorted(unknown)[0]
    hint = (f"; a password goes in the URL's login, {url.partition('://')[0]}://user:password@"
            f"host, percent-encoded" if _SECRET_NAME.search(first) else "")
    raise RedisURLError(url, f"unknown query parameter {first!r} (forkq reads wait_replicas, "
                        f"wait_timeout, sentinel_username, sentinel_password and redis-py's "
                        f"connection parameters){hint}", tuple(unknown))


def _check_tls(url: str, query: dict, tls: bool, scheme: str) -> None:
    if not tls and any(key.startswith("ssl_") for key in query):
        raise RedisURLError(url, f"ssl_* parameters need a {scheme}:// URL")


def _plain_options(url: str, query: dict) -> dict:
    tls = url.lower().startswith("rediss://")
    _check_tls(url, query, tls, "rediss")
    # redis-py's own message may quote part of a password: forkq words its own
    form = ("unix://[user:password@]/path?db=N" if url[:5].lower() == "unix:"
            else "redis[s]://[user:password@]host:port/db")
    problem = f"expected {form}; percent-encode @ / : ? # and % in a user name or password"
    try:
        options = parse_url(url.split("?", 1)[0])
    except ValueError:
        raise RedisURLError(url, problem) from None
    if not url.lower().startswith("unix:"):
        rest = url.split("://", 1)[1]
        path = re.split(r"[?#]", rest[_login_end(rest) + 1:], maxsplit=1)[0].partition("/")[2]
        if path.strip("/") and not path.strip("/").isdigit():
            raise RedisURLError(url, f"the db in the path must be a number; {problem}")
    options.pop("connection_class", None)
    options.update((key, _convert(url, key, value)) for key, value in query.items())
    options["ssl"] = tls
    return options


def _sentinel_target(url: str, scheme: str, query: dict) -> tuple[dict, Sentinels]:
    rest = url.split("://", 1)[1].split("?", 1)[0]
    userinfo, _, hosts_and_path = rest.rpartition("@")
    hosts, _, path = hosts_and_path.partition("/")
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise RedisURLError(url, "expected "
                            f"{scheme}://[user:password@]host:port[,host:port...]/service_name[/db]")
    _check_tls(url, query, scheme == "rediss+sentinel", "rediss+sentinel")
    options = {key: _convert(url, key, value) for key, value in query.items()
               if key not in _SENTINEL_LOGIN}
    options["db"] = int(parts[1]) if len(parts) == 2 else 0
    options["ssl"] = scheme == "rediss+sentinel"
    if userinfo:
        user, _, password = userinfo.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    login = {key.removeprefix("sentinel_"): query[key] for key in _SENTINEL_LOGIN if key in query}
    return options, Sentinels(_addresses(url, hosts), parts[0], login)


def _cluster_target(url: str, scheme: str, query: dict) -> tuple[dict, tuple]:
    rest = url.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0]
    userinfo, _, hosts_and_path = rest.rpartition("@")
    hosts, _, path = hosts_and_path.partition("/")
    if path.strip("/") not in ("", "0") or "db" in query:
        raise RedisURLError(url, "a Redis Cluster has only database 0; expected "
                            f"{scheme}://[user:password@]host:port[,host:port...]")
    _check_tls(url, query, scheme == "rediss+cluster", "rediss+cluster")
    if set(query) & set(_SENTINEL_LOGIN):
        raise RedisURLError(url, "sentinel_* parameters need a redis+sentinel:// URL")
    options = {key: _convert(url, key, value) for key, value in query.items()}
    options["ssl"] = scheme == "rediss+cluster"
    if userinfo:
        user, _, password = userinfo.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    return options, _addresses(url, hosts, "cluster node")


def _addresses(url: str, hosts: str, what: str = "sentinel") -> tuple[tuple[str, int], ...]:
    addresses = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RedisURLError(url, f"{what} address {item!r} is not host:port (a port from "
                                     f"1 to 65535)")
        addresses.append((host.strip("[]"), int(port)))
    return tuple(addresses)


def _convert(url: str, key: str, value: str):
    parser = URL_QUERY_ARGUMENT_PARSERS.get(key)
    if parser is None:
        return value
    try:
        converted = parser(value)
    except (TypeError, ValueError):
        raise RedisURLError(url, f"{key}={value!r} is not valid") from None
    if key in _SECONDS and not is_positive_seconds(converted):
        raise RedisURLError(url, f"{key}={value!r} is not a positive number of seconds"
                                 f"{too_long(converted)}")
    return converted


def _wait_settings(url: str, replicas: str | None, timeout: str | None) -> tuple[int, float]:
    try:
        count = int(replicas) if replicas is not None else 0
        seconds = float(timeout) if timeout is not None else DEFAULT_WAIT_TIMEOUT
    except ValueError:
        count, seconds = -1, -1.0
    # WAIT takes whole milliseconds, and WAIT n 0 waits for ever
    if count < 0 or not is_positive_seconds(seconds, minimum=0.001):
        raise RedisURLError(url, f"wait_replicas must be a whole number "
                            f">= 0 and wait_timeout a finite number of seconds >= 0.001 (got "
                            f"wait_replicas={replicas}, wait_timeout={timeout})")
    return count, seconds
