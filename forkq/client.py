"""The enqueue side: build a payload, check it, run client middleware, push it to Redis.

Runs in any process of the application (web requests, scripts, jobs). One push is one round
trip (``push.commands``: ``SADD queues`` and ``LPUSH``, after a ``SET`` of the ``queued`` result
record for jobs that keep results, sent on one connection without redis-py's pipeline layer);
a bulk push is one multi-value ``LPUSH`` per queue per batch.

Where to push is the client's ``source`` (``connection/source.py``: settings, keys, the
connection, opened at the first push); the default client pushes through the process's
source, which ``configure()`` sets. A push goes in steps that the asyncio client
(``aio.py``) and the Django backend share: ``prepare`` (check ``perform``'s arity and the
arguments, build the payload, work out its unique lock), client middleware (around the push,
or ``admit`` before an asyncio one), ``push_payloads`` (lock and push).

A unique job (``unique_for``) takes its lock (``flow/unique.py``) after the client middleware,
in the same round trip as its push: one script call (``push.script_call``) takes the lock and
pushes only if it got it, so a refused lock makes the push return None and a lock never stands
without its job. A bulk push locks and pushes each batch in one script call and returns the
jids of the jobs that got their lock.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any, Callable, Iterable, NamedTuple

from . import connection, hooks, push
from .connection.source import Source, default_source
from .flow import context as workflow_context
from .flow import placement, shards, unique
from .hooks import Chain
from .options import DATA_OPTIONS, Arity, fair_key, validate_options
from .payload import check_args, dumps

#: jobs per multi-value LPUSH in a bulk push
BULK_BATCH = 1000


class MainModuleJobWarning(UserWarning):
    """A job class defined in ``__main__`` was enqueued: workers cannot resolve its name."""



def new_jid() -> str:
    return os.urandom(12).hex()


def queue_of(merged_options: dict[str, Any]) -> str:
    """The queue a push goes to, from the job class's options merged with the call's."""
    return merged_options.get("queue") or "default"


def build_payload(job_class: type, args: list, options: dict[str, Any],
                  now: float, where: str | Callable[[], str] = "") -> dict[str, Any]:
    """The Sidekiq-format job hash; pure apart from the jid (and a ``fair_key`` function)."""
    merged = {**job_class.options, **options}
    payload: dict[str, Any] = {"class": job_class.wire_name(), "args": args,
                               "queue": queue_of(merged),
                               "retry": merged.get("retry", True)}
    for key in DATA_OPTIONS:
        if key not in payload and merged.get(key) is not None:
            payload[key] = merged[key]
    tenant = fair_key(merged, args, where or f"{job_class.wire_name()}.perform_async")
    if tenant is not None:
        payload["fair_key"] = tenant
        if merged.get("fair_limit") is not None:
            payload["fair_limit"] = merged["fair_limit"]
    payload["jid"] = new_jid()
    payload["created_at"] = now
    return payload


class BulkTemplate:
    """The JSON text of a bulk push's jobs, which differ only in ``args`` and ``jid``.

    Encoding each job hash whole costs more than the rest of a bulk push; this encodes the
    shared part once and splices each job's arguments and jid into it. The text is the same as
    ``payload.dumps`` of the job hash would give, key for key."""

    def __init__(self, sample: dict[str, Any], now: float, keys=None) -> None:
        sample = {**sample, "enqueued_at": now}
        self.queue = sample["queue"]
        home = keys.shard_queue(self.queue, sample["shard"]) if "shard" in sample else self.queue
        self.place = placement.place_of(sample, home)
        self.sample = sample
        text = dumps(sample)
        head, tail = text.split('"args":[]', 1)
        middle, end = tail.split(f'"jid":"{sample["jid"]}"', 1)
        self.parts = (head + '"args":', middle + '"jid":"', '"' + end)

    def render(self, args: list, jid: str) -> str:
        head, middle, end = self.parts
        return f"{head}{dumps(args)}{middle}{jid}{end}"


class Prepared(NamedTuple):
    """A checked payload ready to push, and the unique lock its push must take, if any."""

    job_class: type
    payload: dict[str, Any]
    #: ``(digest, ttl seconds)``, or None for a job that is not unique
    lock: tuple[str, float] | None


class Client:
    """Pushes payloads through ``source`` (default, the process's); ``sink`` is replaced by
    ``forkq.testing`` to run without Redis."""

    def __init__(self, middleware: Chain | None = None, source: Source | None = None) -> None:
        self.source = source if source is not None else default_source()
        #: per job class pushed: ``perform``'s arity (and the ``__main__`` warning given once)
        self._classes: dict[type, Arity] = {}
        #: the client middleware this client runs (the default client: the process's registry)
        self.middleware = middleware if middleware is not None else Chain()
        self.sink: Callable[[list[dict[str, Any]], float | None], None] | None = None
        #: the shard counts read from Redis and the round-robin turns (cluster layout)
        self.shards = shards.ShardCounts()

    # --- the source's, for code that holds a client

    @property
    def keys(self):
        return self.source.keys

    @property
    def redis(self):
        return self.source.redis

    def use_config(self, settings, per_thread: bool = False) -> None:
        self.source.use_config(settings, per_thread)

    def close(self) -> None:
        self.source.close()

    # --- the steps of a push

    def check_args(self, job_class: type, args: list, where: str | Callable[[], str]) -> None:
        """Refuse arguments that do not fit ``perform`` or JSON, naming ``where``."""
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
        rules.check(len(args), where)
        check_args(args, where)

    def prepare(self, job_class: type, args: list, options: dict[str, Any],
                at: float | None = None, *, where: str | Callable[[], str] | None = None,
                now: float | None = None) -> Prepared:
        """Check ``args``, build the payload and work out its lock, whose fields it carries
        (so client middleware sees them); ``where`` names the call in messages."""
        def named() -> str:  # formatted only for a message
            return f"{job_class.wire_name()}.perform_{'at' if at is not None else 'async'}"

        self.check_args(job_class, args, where or named)
        now = time.time() if now is None else now
        payload = build_payload(job_class, args, options, now, where or named)
        return Prepared(job_class, payload, unique_lock(job_class, payload, options, at, now))

    def admit(self, prepared: list[Prepared]) -> list[Prepared]:
        """Those the client middleware lets through (None or False stops a push), for a push
        the middleware cannot wrap: an asyncio one, or a bulk push."""
        if not self.middleware.client:
            return prepared
        return [item for item in prepared if self.middleware.invoke_client(
            item.job_class, item.payload, item.payload["queue"], lambda: True)
            not in (None, False)]

    def push_payloads(self, prepared: list[Prepared], at: float | None = None, *,
                      now: float | None = None, redis=None) -> list[dict[str, Any]]:
        """Lock and push, in one round trip per ``push.SCRIPT_BATCH``: those with a lock are
        pushed only if they took it. The payloads pushed; no middleware runs here. ``now``:
        the push's time (``enqueued_at``), default the clock's."""
        payloads = [item.payload for item in prepared]
        locks = [item.lock for item in prepared]
        if not payloads:
            return []
        if self.sink is not None:
            self.sink(payloads, at)
            return payloads
        open_batch = workflow_context.collecting()
        if open_batch is not None:
            return open_batch.add(prepared, at)  # pushed when the batch block ends
        redis = redis if redis is not None else self.redis
        now = time.time() if now is None else now
        if self.keys.layout == "cluster":
            self.shards.assign(redis, self.keys, payloads)
        if not any(locks):
            connection.send_commands(redis, push.sendable(self.keys, payloads, at, now))
            return payloads
        pushed: list[dict[str, Any]] = []
        for part, part_locks in push.parts(self.keys, payloads, locks):
            call = push.script_call(self.keys, part, part_locks, at, now)
            reply = push.lock_and_push(call, lambda sent: connection.send_commands(redis, sent))
            pushed += push.pushed(part, part_locks, reply)
        return pushed

    def push_prepared(self, prepared: Prepared, at: float | None = None, *,
                      redis=None) -> bool:
        """Push one through the client middleware, which wraps the push; whether it went."""
        payload = prepared.payload
        pushed = self.middleware.invoke_client(
            prepared.job_class, payload, payload["queue"],
            lambda: bool(self.push_payloads([prepared], at, now=payload["created_at"],
                                            redis=redis)))
        return pushed is not False and pushed is not None

    # --- what ``Job`` calls

    def push(self, job_class: type, args: list, options: dict[str, Any],
             at: float | None = None, *, fields: dict[str, Any] | None = None,
             redis=None) -> str | None:
        """Push one job; its jid, or None when middleware or a unique lock refused it.

        ``fields`` are merged into the payload (a periodic job's tick); ``redis`` is a
        connection to use instead of the client's own (the master's short-lived one)."""
        prepared = self.prepare(job_class, args, options, at)
        if fields:
            prepared.payload.update(fields)
        return prepared.payload["jid"] if self.push_prepared(prepared, at, redis=redis) else None

    def push_bulk(self, job_class: type, args_list: Iterable[list], options: dict[str, Any],
                  batch_size: int = BULK_BATCH) -> list[str]:
        """Push many jobs of one class; the jids pushed. Bulk middleware, when there is any,
        runs once around the whole push and gives fields that every payload gets."""
        where = f"{job_class.wire_name()}.perform_bulk"
        validate_options(options, where)
        check_batch_size(batch_size, where)
        if not self.middleware.bulk:
            return self._push_bulk(job_class, args_list, options, batch_size, {})
        fields: dict[str, Any] = {}
        return self.middleware.invoke_bulk(
            job_class, fields, queue_of({**job_class.options, **options}),
            lambda: self._push_bulk(job_class, args_list, options, batch_size, fields))

    def _push_bulk(self, job_class: type, args_list: Iterable[list], options: dict[str, Any],
                   batch_size: int, fields: dict[str, Any]) -> list[str]:
        where = f"{job_class.wire_name()}.perform_bulk"
        now = time.time()
        template = self._template(job_class, options, now, fields)
        by_shard = self._shard_templates(template, now)
        jids: list[str] = []
        batch: list = []
        for index, args in enumerate(args_list):
            item = check_bulk_item(args, index, where)
            if template is None:
                prepared = self.prepare(job_class, args, options, where=item, now=now)
                prepared.payload.update(fields)
                batch.append(prepared)
            else:
                self.check_args(job_class, args, item)
                jid = new_jid()
                jids.append(jid)
                shard = by_shard[self.shards.turn(template.queue, len(by_shard))]
                batch.append((shard, shard.render(args, jid)))
            if len(batch) >= batch_size:
                jids.extend(self._push_batch(batch, template, now))
                batch = []
        if batch:
            jids.extend(self._push_batch(batch, template, now))
        return jids

    def _template(self, job_class: type, options: dict[str, Any], now: float,
                  fields: dict[str, Any]) -> BulkTemplate | None:
        """The bulk template, unless the jobs must be pushed payload by payload: a unique job
        takes a lock per job, a job keeping a result is recorded one by one
        (``push.commands``), and middleware, the testing sink and an open batch see payloads."""
        if callable({**job_class.options, **options}.get("fair_key")):
            return None  # each job's tenant comes from its own arguments
        sample = build_payload(job_class, [], options, now)
        if self.middleware.client or self.sink or unique_rule(job_class, options) is not None \
                or "result_ttl" in sample or workflow_context.collecting() is not None:
            return None
        return BulkTemplate({**sample, **fields}, now)

    def _shard_templates(self, template: BulkTemplate | None, now: float) -> list:
        """The template of each shard the bulk push spreads its jobs over, in turn (cluster
        layout): one per shard of the queue, or the shard of its ``shard_key``."""
        if template is None or self.keys.layout != "cluster":
            return [template]
        sample = template.sample
        count = self.shards.count(self.redis, self.keys, template.queue)
        if count == 1:
            return [template]
        if isinstance(sample.get("shard_key"), str):
            picked = [shards.shard_of_key(sample["shard_key"], count)]
        else:
            picked = list(range(count))
        return [BulkTemplate({**sample, "shard": index}, now, self.keys) for index in picked]

    def _push_batch(self, batch: list, template: BulkTemplate | None, now: float) -> list[str]:
        if template is not None:
            by_place: dict[placement.Place, list[str]] = {}
            for shard, text in batch:
                by_place.setdefault(shard.place, []).append(text)
            sent = [("SADD", self.keys.queues, template.queue),
                    *[command for place, texts in by_place.items()
                      for command in placement.push_commands(self.keys, place, texts)]]
            connection.send_commands(self.redis, sent if template.place.plain
                                     else [("MULTI",), *sent, ("EXEC",)])
            return []
        pushed = self.push_payloads(self.admit(batch), now=now)
        return [payload["jid"] for payload in pushed]


def check_batch_size(batch_size: Any, where: str) -> None:
    """A bulk push's ``batch_size``: a whole number of jobs per round trip, at least 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{where}: batch_size is {batch_size!r}; give a whole number of jobs "
                         f"per round trip, at least 1 (default {BULK_BATCH})")


def check_bulk_item(args: Any, index: int, where: str) -> Callable[[], str]:
    """One item of a bulk push must be a list of arguments; the item's name for messages."""
    if not isinstance(args, list):
        raise TypeError(f"{where}: item {index} is a {type(args).__name__}; pass a list of "
                        f"argument lists")
    return lambda: f"{where}: item {index}"


def unique_rule(job_class: type, options: dict[str, Any]) -> tuple[float, str] | None:
    """``(unique_for, unique_until)`` of a push, None when the job is not unique."""
    if options.get("unique_for") is None and job_class.options.get("unique_for") is None:
        return None
    return unique.validate_options({**job_class.options, **options}, job_class.wire_name())


def unique_lock(job_class: type, payload: dict[str, Any], options: dict[str, Any],
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
    """Set the process's settings over the environment and config file; each value is checked
    at once (``ConfigError``), but no file is read and no connection opened until a push."""
    default_source().configure(redis_url=redis_url, namespace=namespace, data_dir=data_dir)
