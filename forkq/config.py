"""Configuration: one frozen object parsed once, shared by every forkq command.

Precedence: defaults < YAML file < environment (``REDIS_URL``, ``FORKQ_<KEY>``,
``FORKQ_<SECTION>__<KEY>`` such as ``FORKQ_METRICS__PORT``) < flags.
One schema serves ``forkq start``, ``python -m forkq.worker``, ``forkq web`` and ``forkqctl``,
so a command accepts keys only another command uses. Unknown keys and invalid values raise
``ConfigError`` naming the source (file, variable or flag), the key and the value.
All durations are float seconds. The parsers of plain values (numbers, seconds, names) are
``values.py``'s, and the YAML file is read (with its size and alias bounds) by
``configfile.py``; this module holds the schema and the layering.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .configfile import read_file
from .connection import urls as redis_url
from .errors import ConfigError
from .keys import MAX_SHARDS, cluster_name_problem
from .log import FORMATS as LOG_FORMATS, ROOT_OWNERS as LOG_ROOT_OWNERS
from .values import (DAY, HOUR, YEAR, boolean, host, integer, modules, name, name_problem,
                     optional, path, seconds, string, string_list)

#: Sidekiq's names are accepted beside Python's.
LOGLEVELS = {
    "debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING",
    "error": "ERROR", "fatal": "CRITICAL", "critical": "CRITICAL",
}

#: schemes redis-py connects to
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster",
                 "rediss+cluster")
#: highest retry count (config max_retries, job option retry): retry 100 waits about 3 years
MAX_RETRIES = 100
#: read when no config file is named and it exists in the working directory
DEFAULT_FILE = "forkq.yml"


@dataclass(frozen=True)
class Queue:
    name: str
    weight: int = 1
    #: lists the queue is split into on a Redis Cluster (``flow/shards.py``); 1 elsewhere
    shards: int = 1


@dataclass(frozen=True)
class MetricsConfig:
    bind: str = "127.0.0.1"
    port: int | None = 9191


@dataclass(frozen=True)
class WebConfig:
    bind: str = "127.0.0.1"
    port: int = 7433
    username: str | None = None
    password_hash: str | None = None
    read_only: bool = False
    #: host names the UI answers to besides loopback ones (DNS rebinding defence)
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    redis_url: str | None = None
    #: ``default`` (Sidekiq's keys) or ``cluster`` (``keys.ClusterKeys``, a Redis Cluster);
    #: follows the URL's scheme when not given
    layout: str = "default"
    namespace: str | None = None
    data_dir: str = ".forkq"
    require: tuple[str, ...] = ()
    concurrency: int = 10
    #: fewer of the ``concurrency`` threads take work while the process is bound by its
    #: interpreter (``worker/admission.py``)
    adaptive_concurrency: bool = True
    #: coroutine jobs one worker process runs at once on its event loop (``worker/coroutines.py``)
    async_concurrency: int = 100
    queues: tuple[Queue, ...] = (Queue("default"),)
    #: True when queues were given as plain names: strict order, as in Sidekiq.
    strict: bool = True
    timeout: float = 25.0
    fetch: str = "reliable"
    max_retries: int = 25
    #: traceback lines kept with a failed job whose options do not say ``backtrace``
    default_backtrace: int = 10
    dead_max_jobs: int = 10_000
    dead_timeout: float = 180 * DAY
    #: average seconds between scheduled/retry polls; each wait is randomised around it
    poll_interval: float = 5.0
    heartbeat_interval: float = 10.0
    #: seconds a heartbeat lives; after it a silent process is dead and its jobs are recovered
    heartbeat_ttl: float = 60.0
    tag: str = ""
    labels: tuple[str, ...] = ()
    logfile: str | None = None
    loglevel: str = "INFO"
    #: ``text`` (one line a record) or ``json`` (one object a line), ``log.py``
    log_format: str = "text"
    #: who configures the root logger in forkq's processes: ``forkq`` or ``application``
    log_root: str = "forkq"
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: True: each worker child keeps to one CPU (its slot's, ``supervisor/child.keep_to_one_cpu``);
    #: ``"auto"``: its threads keep to one while that makes its jobs faster (``worker/affinity.py``)
    cpu_affinity: bool | str = "auto"
    pidfile: str | None = None
    max_memory_mb: int | None = None
    max_jobs: int | None = None
    liveness_timeout: float = 60.0
    metrics: MetricsConfig = MetricsConfig()
    web: WebConfig = WebConfig()
    #: ``periodic.Entry`` objects of the ``periodic:`` list (entries from code are added at start)
    periodic: tuple = ()
    #: seconds a periodic leader's lease lasts without renewal (how long a dead leader is missed)
    periodic_lease: float = 5.0
    #: the file this was read from, for messages; not a key
    source: str = "defaults"

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.queues)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


# --- parsers of values only the config reads (the shared ones are in values.py)

def _redis_url(value: Any) -> str:
    text = string(value)
    parts = urllib.parse.urlsplit(text)
    if parts.scheme in redis_url.SENTINEL_SCHEMES + redis_url.CLUSTER_SCHEMES:
        return _parsed_url(text)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"expected a URL starting with {', '.join(s + '://' for s in REDIS_SCHEMES)}")
    try:
        parts.port
    except ValueError:
        raise ValueError("the port is not a number from 0 to 65535") from None
    return _parsed_url(text)


def _parsed_url(text: str) -> str:
    """``text`` once ``redis_url`` can read it: query parameters and Sentinel addresses."""
    try:
        redis_url.parse(text)
    except redis_url.RedisURLError as exc:
        raise ValueError(exc.reason) from None
    return text


def _one_of(*choices: str) -> Callable[[Any], str]:
    """A parser of a value that must be one of ``choices``."""
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError("expected " + " or ".join(repr(choice) for choice in choices))
        return value
    return parse


def _auto_or_boolean(value: Any) -> bool | str:
    if str(value).strip().lower() == "auto":
        return "auto"
    try:
        return boolean(value)
    except ValueError:
        raise ValueError("expected true, false or auto") from None


def _loglevel(value: Any) -> str:
    level = LOGLEVELS.get(str(value).strip().lower())
    if level is None:
        raise ValueError(f"expected one of {', '.join(sorted(LOGLEVELS))}")
    return level


def parse_queues(value: Any) -> tuple[tuple[Queue, ...], bool]:
    """Plain names mean strict order; ``[name, weight]`` pairs (or ``name,weight``) are weighted.
    Either may end with a mapping of options: ``[name, {shards: 8}]`` (strict) or
    ``[name, weight, {shards: 8}]`` (weighted)."""
    if isinstance(value, str):
        value = value.replace(";", " ").split()
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("expected a non-empty list of queue names or [name, weight] pairs")
    queues, weighted = [], False
    for entry in value:
        if isinstance(entry, str) and "," in entry:
            entry = entry.split(",", 1)
        if isinstance(entry, str):
            queues.append(Queue(_queue_name(entry)))
            continue
        queue = _queue_entry(entry)
        weighted = weighted or _has_weight(entry)
        queues.append(queue)
    names = [q.name for q in queues]
    if len(set(names)) != len(names):
        raise ValueError("a queue is listed twice")
    return tuple(queues), not weighted


def _has_weight(entry: Any) -> bool:
    return len(entry) == 3 or not isinstance(entry[-1], dict)


def _queue_entry(entry: Any) -> Queue:
    """``[name, weight]``, ``[name, {options}]`` or ``[name, weight, {options}]``."""
    shape = isinstance(entry, (list, tuple)) and len(entry) in (2, 3) and \
        isinstance(entry[0], str) and (len(entry) == 2 or isinstance(entry[2], dict))
    if not shape:
        raise ValueError(f"queue entry {entry!r} is neither a name, [name, weight], "
                         f"[name, {{options}}] nor [name, weight, {{options}}]")
    name = _queue_name(entry[0])
    weight = _weight(entry[1]) if _has_weight(entry) else 1
    options = entry[-1] if isinstance(entry[-1], dict) else {}
    for key in options:
        if key != "shards":
            raise ValueError(f"queue {name!r}: unknown option {key!r} (known: shards)")
    try:
        shards = _shards(options.get("shards", 1))
    except ValueError as exc:
        raise ValueError(f"queue {name!r}: shards {options['shards']!r}: {exc}") from None
    return Queue(name, weight, shards)


def _queue_name(text: str) -> str:
    problem = name_problem(text)
    if problem:
        raise ValueError(f"queue {text!r}: {problem}")
    return text


_weight = integer(1, 1000, " (weights are ratios between queues)")
_shards = integer(1, MAX_SHARDS, " (lists one queue is split into, on a Redis Cluster)")
_port = integer(0, 65535, " (0 picks a free port)")


def _section(value: Any, cls: type, parsers: Mapping[str, Callable[[Any], Any]]) -> Any:
    if not isinstance(value, dict):
        raise ValueError("expected a mapping")
    fields = {}
    for key, raw in value.items():
        if not isinstance(key, str):
            raise ValueError(f"key {key!r} is not a string")
        if key not in parsers:
            raise ValueError(f"unknown key {key!r}{_suggest(key, parsers)}")
        try:
            fields[key] = parsers[key](raw)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return cls(**fields)


PARSERS: dict[str, Callable[[Any], Any]] = {
    "redis_url": optional(_redis_url),
    "layout": _one_of("default", "cluster"),
    "namespace": optional(name),
    "data_dir": path,
    "require": modules,
    "concurrency": integer(1, 1000, ": each thread holds a Redis connection and a stack; "
                                 "past a few hundred the GIL gains nothing, add processes instead"),
    "adaptive_concurrency": boolean,
    "async_concurrency": integer(1, 10_000, ": coroutine jobs share one event loop thread; "
                                         "past a few thousand add processes instead"),
    "queues": parse_queues,
    "timeout": seconds(DAY),
    "fetch": _one_of("reliable", "basic"),
    "max_retries": integer(0, MAX_RETRIES, ": retry 100 already waits about 3 years"),
    "default_backtrace": integer(0, 1000, ": lines of traceback kept in retry and dead"),
    "dead_max_jobs": integer(0, 10_000_000, ": the dead set is held in Redis' memory"),
    "dead_timeout": seconds(10 * YEAR),
    "poll_interval": seconds(HOUR, 0.05),
    "heartbeat_interval": seconds(HOUR, 0.05),
    "heartbeat_ttl": seconds(DAY),
    "tag": string,
    "labels": string_list,
    "logfile": optional(path),
    "loglevel": _loglevel,
    "log_format": _one_of(*LOG_FORMATS),
    "log_root": _one_of(*LOG_ROOT_OWNERS),
    "processes": integer(1, 256, ": each is a forked copy of the application"),
    "cpu_affinity": _auto_or_boolean,
    "pidfile": optional(path),
    "max_memory_mb": optional(integer(1, 1_048_576)),
    "max_jobs": optional(integer(1, 10**9)),
    "liveness_timeout": seconds(DAY),
    "metrics": lambda value: _section(value, MetricsConfig, SECTIONS["metrics"]),
    "web": lambda value: _section(value, WebConfig, SECTIONS["web"]),
    "periodic": None,  # parsed by _periodic, which names the file in its messages
    "periodic_lease": seconds(60.0, 0.5),
}

#: keys whose value is a structure, not settable from one environment variable
STRUCTURED = ("metrics", "web", "periodic")


def _periodic(value: Any, source: str) -> tuple:
    """The ``periodic:`` list; every problem is one ``ConfigError`` naming file, entry, value."""
    from .periodic import entries_from_config  # cronsim is not loaded by a producer's import

    entries = entries_from_config(value, source)
    for entry in entries:
        where = f"{source}: periodic entry {entry.name!r}"
        problem = entry.queue is not None and name_problem(entry.queue)
        if problem:
            raise ConfigError(f"{where}: 'queue' is {entry.queue!r}: {problem}")
    return tuple(entries)


def _suggest(key: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _apply(values: dict[str, Any], raw: Mapping[str, Any], source: str,
           sources: dict[str, str]) -> None:
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError(f"{source}: key {key!r} is not a string")
        if key not in PARSERS:
            raise ConfigError(f"{source}: unknown key {key!r}{_suggest(key, PARSERS)}")
        if key == "periodic":
            values[key], sources[key] = _periodic(value, source), source
            continue
        try:
            parsed = PARSERS[key](value)
        except ValueError as exc:
            shown = redis_url.redact(value) if isinstance(value, str) else value
            raise ConfigError(f"{source}: key {key!r} has invalid value {shown!r}: {exc}") from None
        if key == "queues":
            values["queues"], values["strict"] = parsed
        else:
            values[key] = parsed
        sources[key] = source


def _layout(values: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """The layout: as given, else the URL's (a ``redis+cluster://`` URL means ``cluster``);
    one given that contradicts the URL is refused, naming both."""
    url = values.get("redis_url") or ""
    by_url = "cluster" if url.partition("://")[0] in redis_url.CLUSTER_SCHEMES else "default"
    given = values.get("layout")
    if given is None or given == by_url:
        return by_url
    if given == "cluster":
        raise ConfigError(f"{sources['layout']}: layout: cluster needs a Redis Cluster URL "
                          f"(redis+cluster://host:port[,host:port...] or rediss+cluster://); "
                          f"redis_url is {redis_url.redact(url) if url else 'not set'}")
    raise ConfigError(f"{sources['layout']}: layout: default cannot run on a Redis Cluster "
                      f"(redis_url {redis_url.redact(url)}): Sidekiq's keys cross hash slots; "
                      f"set layout: cluster")


def _build(values: dict[str, Any], sources: Mapping[str, str]) -> Config:
    """The Config, once every layer is applied: checks that relate two keys."""
    values["layout"] = _layout(values, sources)
    config = Config(**values)
    _check_shards(config, sources.get("queues", "defaults"))
    if config.heartbeat_ttl < 2 * config.heartbeat_interval:
        key = "heartbeat_ttl" if "heartbeat_ttl" in sources else "heartbeat_interval"
        raise ConfigError(
            f"{sources.get(key, 'defaults')}: heartbeat_ttl {config.heartbeat_ttl:g} must be at "
            f"least twice heartbeat_interval {config.heartbeat_interval:g}, so that one late "
            f"beat does not make a live process look dead")
    return config


def _check_shards(config: Config, source: str) -> None:
    """Shards run in the cluster layout only, whose shard names take ``#`` (``keys.py``)."""
    for queue in config.queues:
        if queue.shards > 1 and config.layout != "cluster":
            raise ConfigError(
                f"{source}: queue {queue.name!r} has shards: {queue.shards}, which only the "
                f"cluster layout runs (a redis+cluster:// URL): one Redis server gains nothing "
                f"from splitting a queue; remove shards or use a Redis Cluster")
        problem = config.layout == "cluster" and cluster_name_problem(queue.name)
        if problem:
            raise ConfigError(f"{source}: queue {queue.name!r}: {problem}")


#: FORKQ_* variables that are not config keys: read by the commands and the web UI themselves
OTHER_VARIABLES = ("FORKQ_CONFIG", "FORKQ_WEB_USERNAME", "FORKQ_WEB_PASSWORD")
#: parsers of the keys of each section, for ``FORKQ_<SECTION>__<KEY>``
SECTIONS: dict[str, Mapping[str, Callable[[Any], Any]]] = {
    "metrics": {"bind": host, "port": optional(_port)},
    "web": {"bind": host, "port": _port, "username": optional(string),
            "password_hash": optional(string), "read_only": boolean,
            "allowed_hosts": string_list},
}


def environment_names() -> list[str]:
    """Every FORKQ_* variable forkq reads: one per scalar or list key, ``FORKQ_<SECTION>__<KEY>``
    (two underscores: one would be ambiguous with keys like ``max_retries``) per section key."""
    names = ["FORKQ_" + key.upper() for key in PARSERS if key not in STRUCTURED]
    names += [f"FORKQ_{section.upper()}__{key.upper()}"
              for section, keys in SECTIONS.items() for key in keys]
    return names + list(OTHER_VARIABLES)


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """``REDIS_URL``, ``FORKQ_<KEY>`` and ``FORKQ_<SECTION>__<KEY>``, keyed by variable name.

    An unknown ``FORKQ_*`` variable is a ``ConfigError`` with the closest known name, as an
    unknown file key is: a misspelt variable silently ignored is a setting silently lost."""
    known = dict.fromkeys(environment_names())
    raw: dict[str, Any] = {}
    if environ.get("REDIS_URL"):
        raw["REDIS_URL"] = environ["REDIS_URL"]
    for variable in sorted(environ):
        if not variable.startswith("FORKQ_") or variable in OTHER_VARIABLES:
            continue
        if variable not in known:
            why = (" (a structure: set it in the config file)"
                   if variable[6:].lower() in STRUCTURED else _suggest(variable, known))
            raise ConfigError(f"environment variable {variable}: not a forkq setting{why}")
        raw[variable] = environ[variable]
    return raw


def _apply_environ(values: dict[str, Any], environ: Mapping[str, str],
                   sources: dict[str, str]) -> None:
    for variable, value in from_environ(environ).items():
        source = f"environment variable {variable}"
        section, _, key = ("redis_url" if variable == "REDIS_URL" else variable[6:].lower()
                           ).partition("__")
        if not key:
            _apply(values, {section: value}, source, sources)
            continue
        try:
            parsed = SECTIONS[section][key](value)
        except ValueError as exc:
            raise ConfigError(f"{source}: {section}.{key} has invalid value {value!r}: {exc}"
                              ) from None
        current = values.get(section) or {"metrics": MetricsConfig(), "web": WebConfig()}[section]
        values[section], sources[section] = dataclasses.replace(current, **{key: parsed}), source


def default_path(environ: Mapping[str, str] | None = None) -> str | None:
    """The config file when none is named: ``FORKQ_CONFIG``, else ``./forkq.yml`` if it exists."""
    environ = os.environ if environ is None else environ
    if environ.get("FORKQ_CONFIG"):
        return environ["FORKQ_CONFIG"]
    return DEFAULT_FILE if os.path.exists(DEFAULT_FILE) else None


def load(path: str | None = None, flags: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None, flags_source: str = "command line") -> Config:
    """Defaults < file < environment < flags; flags whose value is None are ignored."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path:
        _apply(values, read_file(path), path, sources)
        values["source"] = path
    _apply_environ(values, environ, sources)
    given_flags = {k: v for k, v in (flags or {}).items() if v is not None}
    _apply(values, given_flags, flags_source, sources)
    return _build(values, sources)


def from_mapping(raw: Mapping[str, Any], source: str = "settings") -> Config:
    """A Config from a mapping of keys as the YAML file would hold them (tests, embedding)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    _apply(values, raw, source, sources)
    return _build(values, sources)


def parse_bind(text: str, default_port: int, source: str = "command line: --bind",
               default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port``, ``:port`` (all interfaces), a bare IPv6 address,
    or a bare port number (on ``default_host``: a number is never a host name)."""
    address, port = text, default_port
    if text.isascii() and text.isdigit():
        address, port = default_host, text
    elif text.startswith("["):
        address, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        address, _, port = text.partition(":")
    try:
        return host(address or "0.0.0.0"), _port(port)
    except ValueError as exc:
        raise ConfigError(f"{source} {text!r}: {exc}") from None
