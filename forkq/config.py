"""Configuration: one frozen object parsed once, shared by every forkq command.

Precedence: defaults < YAML file < environment (``REDIS_URL``, ``FORKQ_<KEY>``) < flags.
One schema serves ``forkq start``, ``python -m forkq.worker``, ``forkq web`` and ``forkqctl``,
so a command accepts keys only another command uses. Unknown keys and invalid values raise
``ConfigError`` naming the source (file, variable or flag), the key and the value.
All durations are float seconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import ConfigError

#: Sidekiq's names are accepted beside Python's.
LOGLEVELS = {
    "debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING",
    "error": "ERROR", "fatal": "CRITICAL", "critical": "CRITICAL",
}

DAY = 86400.0


@dataclass(frozen=True)
class Queue:
    name: str
    weight: int = 1


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
    namespace: str | None = None
    data_dir: str = ".forkq"
    require: tuple[str, ...] = ()
    concurrency: int = 10
    queues: tuple[Queue, ...] = (Queue("default"),)
    #: True when queues were given as plain names: strict order, as in Sidekiq.
    strict: bool = True
    timeout: float = 25.0
    fetch: str = "reliable"
    max_retries: int = 25
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
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    pidfile: str | None = None
    max_memory_mb: int | None = None
    max_jobs: int | None = None
    liveness_timeout: float = 60.0
    metrics: MetricsConfig = MetricsConfig()
    web: WebConfig = WebConfig()
    #: the file this was read from, for messages; not a key
    source: str = "defaults"

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.queues)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


# --- value parsers: each takes the raw value and returns the parsed one or raises ValueError

def _int(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        if number < minimum:
            raise ValueError(f"expected an integer >= {minimum}")
        return number
    return parse


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
            return None
        return parse(value)
    return parse_optional


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if number <= 0:
        raise ValueError("expected a positive number of seconds")
    return number


def _string(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a string")
    return str(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _string_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part for part in value.replace(",", " ").split() if part]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _fetch(value: Any) -> str:
    if value not in ("reliable", "basic"):
        raise ValueError("expected 'reliable' or 'basic'")
    return value


def _loglevel(value: Any) -> str:
    level = LOGLEVELS.get(str(value).strip().lower())
    if level is None:
        raise ValueError(f"expected one of {', '.join(sorted(LOGLEVELS))}")
    return level


def parse_queues(value: Any) -> tuple[tuple[Queue, ...], bool]:
    """Plain names mean strict order; ``[name, weight]`` pairs (or ``name,weight``) are weighted."""
    if isinstance(value, str):
        value = value.replace(";", " ").split()
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("expected a non-empty list of queue names or [name, weight] pairs")
    queues, weighted = [], False
    for entry in value:
        if isinstance(entry, str) and "," in entry:
            entry = entry.split(",", 1)
        if isinstance(entry, str) and entry:
            queues.append(Queue(entry))
        elif isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str):
            queues.append(Queue(entry[0], _int(1)(entry[1])))
            weighted = True
        else:
            raise ValueError(f"queue entry {entry!r} is neither a name nor [name, weight]")
    names = [q.name for q in queues]
    if len(set(names)) != len(names):
        raise ValueError("a queue is listed twice")
    return tuple(queues), not weighted


def _metrics(value: Any) -> MetricsConfig:
    return _section(value, MetricsConfig, {"bind": _string, "port": _optional(_int(0))})


def _web(value: Any) -> WebConfig:
    return _section(value, WebConfig, {
        "bind": _string, "port": _int(0), "username": _optional(_string),
        "password_hash": _optional(_string), "read_only": _bool,
        "allowed_hosts": _string_list,
    })


def _section(value: Any, cls: type, parsers: Mapping[str, Callable[[Any], Any]]) -> Any:
    if not isinstance(value, dict):
        raise ValueError("expected a mapping")
    fields = {}
    for key, raw in value.items():
        if key not in parsers:
            raise ValueError(f"unknown key {key!r}{_suggest(key, parsers)}")
        try:
            fields[key] = parsers[key](raw)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return cls(**fields)


PARSERS: dict[str, Callable[[Any], Any]] = {
    "redis_url": _optional(_string),
    "namespace": _optional(_string),
    "data_dir": _string,
    "require": _string_list,
    "concurrency": _int(1),
    "queues": parse_queues,
    "timeout": _seconds,
    "fetch": _fetch,
    "max_retries": _int(0),
    "dead_max_jobs": _int(0),
    "dead_timeout": _seconds,
    "poll_interval": _seconds,
    "heartbeat_interval": _seconds,
    "heartbeat_ttl": _seconds,
    "tag": _string,
    "labels": _string_list,
    "logfile": _optional(_string),
    "loglevel": _loglevel,
    "processes": _int(1),
    "pidfile": _optional(_string),
    "max_memory_mb": _optional(_int(1)),
    "max_jobs": _optional(_int(1)),
    "liveness_timeout": _seconds,
    "metrics": _metrics,
    "web": _web,
}


def _suggest(key: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _apply(values: dict[str, Any], raw: Mapping[str, Any], source: str) -> None:
    for key, value in raw.items():
        if key not in PARSERS:
            raise ConfigError(f"{source}: unknown key {key!r}{_suggest(key, PARSERS)}")
        try:
            parsed = PARSERS[key](value)
        except ValueError as exc:
            raise ConfigError(f"{source}: key {key!r} has invalid value {value!r}: {exc}") from None
        if key == "queues":
            values["queues"], values["strict"] = parsed
        else:
            values[key] = parsed


def read_file(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return raw


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """``REDIS_URL`` and ``FORKQ_<KEY>`` for every top-level scalar or list key."""
    raw: dict[str, Any] = {}
    if environ.get("REDIS_URL"):
        raw["redis_url"] = environ["REDIS_URL"]
    for key in PARSERS:
        name = "FORKQ_" + key.upper()
        if name in environ and key not in ("metrics", "web"):
            raw[key] = environ[name]
    return raw


def load(path: str | None = None, flags: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Defaults < file < environment < flags; flags whose value is None are ignored."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if path:
        _apply(values, read_file(path), path)
        values["source"] = path
    for key, value in from_environ(environ).items():
        _apply(values, {key: value}, f"environment variable {_env_name(key)}")
    given_flags = {k: v for k, v in (flags or {}).items() if v is not None}
    _apply(values, given_flags, "command line")
    return Config(**values)


def _env_name(key: str) -> str:
    return "REDIS_URL" if key == "redis_url" else "FORKQ_" + key.upper()


def from_mapping(raw: Mapping[str, Any], source: str = "settings") -> Config:
    """A Config from a mapping of keys as the YAML file would hold them (tests, embedding)."""
    values: dict[str, Any] = {}
    _apply(values, raw, source)
    return Config(**values)
