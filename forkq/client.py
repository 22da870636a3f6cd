"""The enqueue side: build a payload, check it, run client middleware, push it to Redis.

Runs in any process of the application (web requests, scripts, jobs). One push is one round
trip (``push.commands``: ``SADD queues`` and ``LPUSH``, after a ``SET`` of the ``queued`` result
record for jobs that keep results, sent on one connection without redis-py's pipeline layer);
a bulk push is one multi-value ``LPUSH`` per queue per batch. ``configure()`` only records settings: the connection opens at the first push,
so modules that configure at import are safe to preload before ``fork()``.

The client's settings (``redis_url``, ``namespace``, ``data_dir``) come from the same place as
the workers': ``configure(...)`` > environment (``REDIS_URL``, ``FORKQ_*``) > the config file
(``FORKQ_CONFIG``, else ``forkq.yml`` in the working directory) > defaults, read at the first
push. Without a Redis URL the embedded server under ``data_dir`` is used. In a worker process
the worker's own config wins (``use_config``).

A unique job (``unique_for``) takes its lock (``unique.py``) after the client middleware, in
the same round trip as its push: one script call (``unique_push.py``) takes the lock and pushes
only if it got it, so a refused lock makes the push return None and a lock never stands
without its job. A bulk push locks and pushes each batch in one script call and returns the
jids of the jobs that got their lock.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any, Callable, Iterable

from . import arguments, config, connection, hooks, push, unique_push
from .flow import unique
from .config import Config
from .hooks import Chain
from .job import DATA_OPTIONS, Arity, Job, validate_options
from .keys import Keys
from .payload import dumps

#: jobs per multi-value LPUSH in a bulk push
BULK_BATCH = 1000
#: the source named in messages about values given to ``configure()``
CONFIGURE = "forkq.configure()"


class MainModuleJobWarning(UserWarning):
    """A job class defined in ``__main__`` was enqueued: workers cannot resolve its name."""



def new_jid() -> str:
    return os.urandom(12).hex()


def build_payload(job_class: type[Job], args: list, options: dict[str, Any],
                  now: float) -> dict[str, Any]:
    """The Sidekiq-format job hash; pure apart from the jid."""
    merged = {**job_class.options, **options}
    payload: dict[str, Any] = {"class": job_class.wire_name(), "args": args,
                               "queue": merged.get("queue") or "default",
                               "retry": merged.get("retry", True)}
    for key in DATA_OPTIONS:
        if key not in payload and merged.get(key) is not None:
            payload[key] = merged[key]
    payload["jid"] = new_jid()
    payload["created_at"] = now
    return payload


class BulkTemplate:
    """The JSON text of a bulk push's jobs, which differ only in ``args`` and ``jid``.

    Encoding each job hash whole costs more than the rest of a bulk push; this encodes the
    shared part once and splices each job's arguments and jid into it. The text is the same as
    ``payload.dumps`` of the job hash would give, key for key."""

    def __init__(self, sample: dict[str, Any], now: float) -> None:
        sample = {**sample, "enqueued_at": now}
        self.queue = sample["queue"]
        text = dumps(sample)
        head, tail = text.split('"args":[]', 1)
        middle, end = tail.split(f'"jid":"{sample["jid"]}"', 1)
        self.parts = (head + '"args":', middle + '"jid":"', '"' + end)

    def render(self, args: list, jid: str) -> str:
        head, middle, end = self.parts
        return f"{head}{dumps(args)}{middle}{jid}{end}"


class Client:
    """Pushes payloads; ``sink`` is replaced by ``forkq.testing`` to run without Redis."""

    def __init__(self, middleware: Chain | None = None) -> None:
        #: client keys given by ``configure()`` (or adopted from a command's config, with its
        #: ``max_retries``)
        self._given: dict[str, Any] = {}
        #: False once a command's parsed config was adopted: its file and environment are read
        self._read_environment = True
        self._settings: tuple[Config, Keys] | None = None
        #: per job class pushed: ``perform``'s arity (and the ``__main__`` warning given once)
        self._classes: dict[type, Arity] = {}
        #: the client middleware this client runs (the default client: the process's registry)
        self.middleware = middleware if middleware is not None else Chain()
        self.sink: Callable[[list[dict[str, Any]], float | None], None] | None = None
        self._redis = connection.LazyClient()

    def configure(self, redis_url: str | None = None, namespace: str | None = None,
                  data_dir: str | None = None) -> None:
        """Record settings (``None`` keeps the current one); opens no connection."""
        given = {key: value for key, value in (("redis_url", redis_url), ("namespace", namespace),
                                               ("data_dir", data_dir)) if value is not None}
        config.from_mapping(given, CONFIGURE)  # a bad value fails here, at the call
        self._given.update(given)
        self._forget_settings()

    def use_config(self, settings: Config, per_thread: bool = False) -> None:
        """Adopt a worker's or command's parsed config (its ``redis_url`` wins); a worker asks
        for a connection per thread (``LazyClient``). Its ``max_retries`` is kept too, so that
        code running in the worker (server middleware) reads the limit its retries follow."""
        self._given.update(redis_url=settings.redis_url or self._given.get("redis_url"),
                           namespace=settings.namespace or "", data_dir=settings.data_dir,
                           max_retries=settings.max_retries)
        self._read_environment = False
        self._forget_settings()
        self._redis.per_thread = per_thread

    def close(self) -> None:
        """Close the connection, if one was opened; the next push opens a new one."""
        self._redis.reset()

    @property
    def settings(self) -> Config:
        """What the client uses: ``configure()`` > environment > config file > defaults.

        Read at the first push (or ``redis()``), so a producer uses the same file and
        environment as the workers; ``configure()`` reads them again at the next push."""
        return self._resolved()[0]

    @property
    def keys(self) -> Keys:
        return self._resolved()[1]

    def _resolved(self) -> tuple[Config, Keys]:
        resolved = self._settings
        if resolved is None:
            if self._read_environment:
                settings = config.load(config.default_path(), flags=self._given,
                                       flags_source=CONFIGURE)
            else:
                settings = config.from_mapping(self._given, CONFIGURE)
            resolved = self._settings = (settings, Keys(settings.namespace))
        return resolved

    def _forget_settings(self) -> None:
        self._settings = None
        self._redis.reset()

    @property
    def redis(self):
        return self._redis.get(self._url)

    def _url(self) -> str:
        settings = self.settings
        return connection.resolve_url(settings.redis_url, settings.data_dir)

    def _rules(self, job_class: type[Job]) -> Arity:
        """What enqueueing ``job_class`` must respect, worked out at its first push."""
        rules = self._classes.get(job_class)
        if rules is None:
            new = Arity(job_class)
            # setdefault is atomic: of threads racing on a class's first push, one warns.
            rules = self._classes.setdefault(job_class, new)
            if rules is new and job_class.wire_name().startswith("__main__."):
                warnings.warn(
                    f"job class {job_class.wire_name()} is defined in the script being run "
                    f"(__main__), so no worker can resolve it; define it in a module the "
                    f"workers import (require:) and import it from there", MainModuleJobWarning,
                    stacklevel=5)
        return rules

    def push(self, job_class: type[Job], args: list, options: dict[str, Any],
             at: float | None = None, *, fields: dict[str, Any] | None = None,
             redis=None) -> str | None:
        """Push one job; its jid, or None when middleware or a unique lock refused it.

        ``fields`` are merged into the payload (a periodic job's tick); ``redis`` is a
        connection to use instead of the client's own (the master's short-lived one)."""
        def where() -> str:  # formatted only for a message
            return f"{job_class.wire_name()}.perform_{'at' if at is not None else 'async'}"

        self._rules(job_class).check(len(args), where)
        arguments.check(args, where)
        now = time.time()
        payload = build_payload(job_class, args, options, now)
        if fields:
            payload.update(fields)
        lock = unique_lock(job_class, payload, options, at, now)
        pushed = self.middleware.invoke_client(
            job_class, payload, payload["queue"],
            lambda: self._push_unique([payload], [lock], at, now, redis))
        return payload["jid"] if pushed is not False and pushed is not None else None

    def push_bulk(self, job_class: type[Job], args_list: Iterable[list], options: dict[str, Any],
                  batch_size: int = BULK_BATCH) -> list[str]:
        name = job_class.wire_name()
        validate_options(options, f"{name}.perform_bulk")
        check_batch_size(batch_size, f"{name}.perform_bulk")
        rules = self._rules(job_class)
        now = time.time()
        sample = build_payload(job_class, [], options, now)
        # A unique job takes a lock per job, and a job keeping a result is recorded one by one
        # (``push.commands``): neither can use the template.
        is_unique = unique_rule(job_class, options) is not None
        template = None if self.middleware.client or self.sink or is_unique or \
            "result_ttl" in sample else BulkTemplate(sample, now)
        jids: list[str] = []
        batch: list = []
        for index, args in enumerate(args_list):
            check_bulk_item(args, index, rules, f"{name}.perform_bulk")
            if template is None:
                batch.append(build_payload(job_class, args, options, now))
            else:
                jid = new_jid()
                jids.append(jid)
                batch.append(template.render(args, jid))
            if len(batch) >= batch_size:
                jids.extend(self._push_batch(job_class, batch, options, now, template))
                batch = []
        if batch:
            jids.extend(self._push_batch(job_class, batch, options, now, template))
        return jids

    def _push_batch(self, job_class, batch, options, now, template) -> list[str]:
        if template is not None:
            connection.send_commands(self.redis, [
                ("SADD", self.keys.queues, template.queue),
                ("LPUSH", self.keys.queue(template.queue), *batch)])
            return []
        # the lock's fields are in the payload before middleware sees it, as in ``push``
        locked = [(p, unique_lock(job_class, p, options, None, now)) for p in batch]
        if self.middleware.client:
            locked = [(p, lock) for p, lock in locked if self.middleware.invoke_client(
                job_class, p, p["queue"], lambda: True) not in (None, False)]
        batch, locks = [p for p, _ in locked], [lock for _, lock in locked]
        return [p["jid"] for p in self._push_unique(batch, locks, None, now) or ()]

    def _push_unique(self, payloads: list[dict[str, Any]], locks: list, at: float | None,
                     now: float, redis=None) -> list[dict[str, Any]] | None:
        """Lock and push the payloads in one round trip per ``unique_push.SCRIPT_BATCH``
        (``unique_push.py``): those with a lock are pushed only if they took it. The pushed
        payloads, or None when none was (or middleware left none to push)."""
        if not payloads:
            return None
        if self.sink is not None or not any(locks):
            self._push(payloads, at, now, redis)
            return payloads
        redis = redis if redis is not None else self.redis
        pushed: list[dict[str, Any]] = []
        for part, part_locks in unique_push.parts(payloads, locks):
            call = unique_push.script_call(self.keys, part, part_locks, at, now)
            reply = unique_push.LOCK_PUSH.send_by(
                lambda command: connection.send_commands(redis, [command])[0], call)
            pushed += unique_push.pushed(part, part_locks, reply)
        return pushed or None

    def _push(self, payloads: list[dict[str, Any]], at: float | None, now: float,
              redis=None) -> bool:
        if self.sink is not None:
            self.sink(payloads, at)
            return True
        connection.send_commands(redis if redis is not None else self.redis,
                                 push.commands(self.keys, payloads, at, now))
        return True


def check_batch_size(batch_size: Any, where: str) -> None:
    """A bulk push's ``batch_size``: a whole number of jobs per round trip, at least 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{where}: batch_size is {batch_size!r}; give a whole number of jobs "
                         f"per round trip, at least 1 (default {BULK_BATCH})")


def check_bulk_item(args: Any, index: int, rules: Arity, where: str) -> None:
    """One item of a bulk push: a list of arguments that fits ``perform`` and JSON."""
    if not isinstance(args, list):
        raise TypeError(f"{where}: item {index} is a {type(args).__name__}; pass a list of "
                        f"argument lists")
    rules.check(len(args), lambda: f"{where}: item {index}")
    arguments.check(args, lambda: f"{where}: item {index}")


def unique_rule(job_class: type[Job], options: dict[str, Any]) -> tuple[float, str] | None:
    """``(unique_for, unique_until)`` of a push, None when the job is not unique."""
    if options.get("unique_for") is None and job_class.options.get("unique_for") is None:
        return None
    return unique.validate_options({**job_class.options, **options}, job_class.wire_name())


def unique_lock(job_class: type[Job], payload: dict[str, Any], options: dict[str, Any],
                at: float | None, now: float) -> tuple[str, float] | None:
    """The lock a push must take, ``(digest, ttl)``, with its fields merged into the payload;
    None for a job that is not unique. A scheduled job holds it until its run time plus
    ``unique_for``."""
    rule = unique_rule(job_class, options)
    if rule is None:
        return None
    unique_for, until = rule
    lock_digest = unique.digest(payload["class"], payload["queue"], payload["args"])
    payload.update(unique.payload_fields(lock_digest, until))
    return lock_digest, unique.lock_ttl(unique_for, now, at if at is not None and at > now
                                        else None)


_default = Client(hooks.registry.middleware)


def default() -> Client:
    return _default


def configure(redis_url: str | None = None, namespace: str | None = None,
              data_dir: str | None = None) -> None:
    """Set the client's settings over the environment and config file; each value is checked
    at once (``ConfigError``), but no file is read and no connection opened until a push."""
    _default.configure(redis_url=redis_url, namespace=namespace, data_dir=data_dir)
