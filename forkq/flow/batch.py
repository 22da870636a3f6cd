"""Batches (Sidekiq Pro's semantics): jobs enqueued together, with callbacks when all of them
have run (``complete``), all succeeded (``success``), or one died (``death``).

```
with forkq.batch(description="import", on_success=Notify, data={"user": 7}) as b:
    for row in rows:
        ImportRow.perform_async(row)      # joins the batch, pushed at the block's end
status = forkq.batch_status(b.bid)
```

The producer side runs in any process: while a ``batch`` block is open in the current context
(thread or task), every enqueue through the default client (one at a time, bulk, scheduled,
asyncio) is collected instead of pushed, with the payload field ``bid`` (Ruby Sidekiq OSS
ignores it). At the block's normal end one script call (``batch_scripts.OPEN_SCRIPT``) writes
the batch record and pushes every job: all or nothing. A block that raises pushes none. A batch
opened inside an open block, or inside a running batch job, is that batch's child (the parent
succeeds only after it); a child opened inside an open block is committed with its parent, in
one ``MULTI``, after the parent, which counts it. ``async with`` commits on the asyncio
connection. Under ``forkq.testing`` the jobs go to its sink and no record is written. In the
cluster layout the commit is ordered steps instead (``batch_cluster.py``: record, pushes,
seal), and a child's bid starts with its tree's root bid, the tree's hash tag.

A running job adds jobs to its own batch with ``forkq.batch.reopen(bid)`` (``self.batch``): the
jobs are counted and pushed when that block ends, before the running job ends, so the batch
cannot complete in between. A reopened batch that had already succeeded counts them but fires
no callback again.

The worker side (``batch_scripts.py``) counts each member's end in the script that writes
that end. Events: ``complete`` once every job has run at least once (succeeded, or failed and
is retrying or dead) and every child completed; ``success`` once every job succeeded and every
child succeeded (never while a job is dead); ``death`` the first time a job dies (dead,
dropped with ``retry: false``, or expired unstarted). Each fires at most once; a callback is a
job with args ``[bid, event, data]`` on ``callback_queue`` (default: the queue of the batch's
first job).
An empty batch completes and succeeds at its commit.

Records expire ``expires_in`` seconds (30 days) after the commit, and ``keep`` seconds (24 h)
after success. Unique jobs (``unique_for``) cannot join a batch: their push may be refused,
which a batch's all-or-nothing commit cannot express.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .. import push as push_layout
from ..client import build_payload, default, new_jid
from ..connection import send_commands
from ..payload import check_args, dumps
from ..values import positive_seconds
from . import batch_cluster, batch_scripts
from .context import _open, _running

#: seconds a batch's record lives after its commit, unless it succeeds first
EXPIRES_IN = 30 * 86400
#: seconds a batch's record lives after its success
KEEP = 86400
EVENTS = ("success", "complete", "death")

class Batch:
    """``forkq.batch(...)``: a block whose enqueues form one batch; ``bid`` is known at once."""

    def __init__(self, *, description: str | None = None, on_success=None, on_complete=None,
                 on_death=None, callback_queue: str | None = None, data: Any = None,
                 keep: float = KEEP, expires_in: float = EXPIRES_IN) -> None:
        self.bid = tree_bid(_parent_now())
        self.description = description
        self.callbacks = {"success": on_success, "complete": on_complete, "death": on_death}
        self.callback_queue = callback_queue
        self.data = data
        self.keep = positive_seconds(keep, "forkq.batch(keep=...)")
        self.expires_in = positive_seconds(expires_in, "forkq.batch(expires_in=...)")
        check_args([data], "forkq.batch(data=...)")
        self.reopened = False
        #: (payload, at) of the jobs enqueued in the block, in order
        self.jobs: list[tuple[dict[str, Any], float | None]] = []
        #: commands of child batches committed inside this block (sent after this one's,
        #: which counts them) and how many children they write
        self.children: list[tuple] = []
        self.child_count = 0
        #: the cluster layout's: child batches committed inside this block, after this one
        self.child_batches: list[Batch] = []
        #: a chord's callback: (head, tail, size) of its JSON text around the results;
        #: (text, "", -1) for an immutable callback
        self.chord: tuple[str, str, int] | None = None
        self._token = None
        self._outer: Batch | None = None

    @classmethod
    def reopen(cls, bid: str) -> "Batch":
        """A block adding jobs to batch ``bid`` (from one of its running jobs, typically)."""
        batch = cls()
        batch.bid, batch.reopened = bid, True
        return batch

    @property
    def jids(self) -> list[str]:
        return [payload["jid"] for payload, _ in self.jobs]

    def __enter__(self) -> "Batch":
        self._outer = _open.get()
        self._token = _open.set(self)
        return self

    def __exit__(self, kind, error, trace) -> bool:
        _open.reset(self._token)
        if kind is None:
            self.commit()
        return False

    async def __aenter__(self) -> "Batch":
        return self.__enter__()

    async def __aexit__(self, kind, error, trace) -> bool:
        """``async with``: the commit goes out on the asyncio connection."""
        _open.reset(self._token)
        if kind is None:
            await self.commit_async()
        return False

    def add(self, prepared: list, at: float | None) -> list[dict[str, Any]]:
        """Collect pushes (``client.Prepared``) made in the block; what a push returns."""
        for item in prepared:
            if item.lock is not None:
                raise ValueError(f"{item.payload['class']} is a unique job (unique_for): it "
                                 f"cannot join batch {self.bid}, whose jobs are pushed all or "
                                 f"none; enqueue it outside the batch block")
            item.payload["bid"] = self.bid
            self.jobs.append((item.payload, at))
        return [item.payload for item in prepared]

    # --- the commit

    def commit(self) -> None:
        """Write the record and push the jobs in one ``MULTI`` (or hand the commands to the
        enclosing batch block, whose commit sends them)."""
        if default().keys.layout == "cluster":
            self._commit_in_steps()
            return
        commands = self._to_send()
        if commands:
            _raise_any(send_commands(default().redis, commands))

    async def commit_async(self) -> None:
        """``commit`` on the asyncio connection (``forkq.aio``)."""
        from ..connection import aio  # imports redis.asyncio: only for applications using it

        if default().keys.layout == "cluster":
            await asyncio.to_thread(self._commit_in_steps)
            return
        commands = self._to_send()
        if commands:
            _raise_any(await aio.send(commands, default().source))

    def _to_send(self) -> list[tuple]:
        """What the commit sends: the script calls, in a ``MULTI`` when there are several;
        nothing when they go with the enclosing block's, or under ``forkq.testing``."""
        client = default()
        if client.sink is not None:
            return []  # forkq.testing: the jobs went to its sink; no record, no callback
        commands = self._commands(client.keys) + self.children
        if self._outer is not None and not self.reopened:
            self._outer.children += commands
            self._outer.child_count += 1
            return []
        return commands if len(commands) == 1 else [("MULTI",), *commands, ("EXEC",)]

    def _commit_in_steps(self) -> None:
        """The cluster layout's commit (``batch_cluster.py``): the record, the pushes, the
        seal, batch by batch, a parent before the children committed in its block."""
        client = default()
        if client.sink is not None:
            return
        if self._outer is not None and not self.reopened:
            self._outer.child_batches.append(self)
            self._outer.child_count += 1
            return
        self._send_steps(client.redis, client.keys, counted=False)

    def _send_steps(self, redis, keys, counted: bool) -> None:
        now = time.time()
        batch_cluster.write_record(
            redis, keys, self.bid, self.jids, {} if self.reopened else self._fields(keys, now),
            reopen=self.reopened, expires_in=self.expires_in)
        for commands in self._pushes(keys, now):
            send_commands(redis, commands)
        if not self.reopened:
            batch_cluster.seal(redis, keys, self.bid, parent=self._parent(),
                               created_at=now, children=self.child_count, counted=counted)
        for child in self.child_batches:
            child._send_steps(redis, keys, counted=True)

    def _parent(self) -> str:
        if self.reopened:
            return ""
        return (self._outer.bid if self._outer else _running.get()) or ""

    def _pushes(self, keys, now: float) -> list[list[tuple]]:
        """The push commands (``push.commands``) of the jobs, one list per time they run at."""
        by_time: dict[float | None, list[dict[str, Any]]] = {}
        for payload, at in self.jobs:
            by_time.setdefault(at, []).append(payload)
        return [push_layout.commands(keys, payloads, at, now)
                for at, payloads in by_time.items()]

    def _commands(self, keys) -> list[tuple]:
        now = time.time()
        pushes = [command for commands in self._pushes(keys, now) for command in commands]
        return [batch_scripts.open_command(
            keys, self.bid, self.jids, {} if self.reopened else self._fields(keys, now),
            pushes, parent=self._parent(), expires_in=self.expires_in, created_at=now,
            reopen=self.reopened, children=self.child_count,
            counted=self._outer is not None)]

    def _fields(self, keys, now: float) -> dict[str, Any]:
        queue = self.callback_queue or (self.jobs[0][0]["queue"] if self.jobs else "default")
        fields: dict[str, Any] = {"created_at": repr(now), "keep": int(self.keep),
                                  "cb_queue": queue, "cb_queue_key": keys.queue(queue)}
        if self.description is not None:
            fields["description"] = str(self.description)
        for event, target in self.callbacks.items():
            if target is not None:
                fields[f"cb_{event}"] = callback_text(target, [self.bid, event, self.data],
                                                      queue, now)
        if self.chord is not None and self.chord[2] < 0:  # an immutable chord callback
            fields["cb_success"] = self.chord[0]
        elif self.chord is not None:
            fields.update(chord_head=self.chord[0], chord_tail=self.chord[1],
                          chord_size=self.chord[2])
        return fields


def _parent_now() -> str | None:
    """The bid of the batch a batch opened here would belong to: the open block's, or the
    running batch job's."""
    outer = _open.get()
    return outer.bid if outer is not None else _running.get()


def tree_bid(parent: str | None) -> str:
    """A new bid; in the cluster layout a child's starts with its tree's root bid, the hash
    tag of the whole tree (``ClusterKeys.batch``)."""
    if parent and default().keys.layout == "cluster":
        return f"{parent.split('.', 1)[0]}.{new_jid()}"
    return new_jid()


def _raise_any(replies: list) -> None:
    """Raise the error a script of a ``MULTI`` answered, if any (``EXEC``'s reply is last)."""
    for reply in replies[-1] if isinstance(replies[-1], list) else ():
        if isinstance(reply, Exception):
            raise reply


def callback_text(target, args: list, queue: str, now: float) -> str:
    """A callback job's JSON text without ``enqueued_at`` (added when it is pushed):
    ``target`` is a job class or a wire name (a job another codebase defines)."""
    if isinstance(target, str):
        payload = {"class": target, "args": args, "queue": queue, "retry": True,
                   "jid": new_jid(), "created_at": now}
    elif isinstance(getattr(target, "job_class", None), type):  # a @forkq.job function
        payload = build_payload(target.job_class, args, {"queue": queue}, now)
    else:
        payload = build_payload(target, args, {"queue": queue}, now)
    return dumps(payload)


@dataclass(frozen=True)
class BatchStatus:
    """A batch as ``forkq.batch_status`` reads it; times are float epoch seconds."""

    bid: str
    description: str | None
    #: jobs that joined the batch
    total: int
    #: jobs not yet succeeded
    pending: int
    #: jobs whose last run failed (retrying or dead) or that were cancelled, and that have
    #: not succeeded since
    failures: int
    #: jid → "ErrorClass: message" of those jobs
    failed_jids: dict[str, str] = field(default_factory=dict)
    dead_jids: list[str] = field(default_factory=list)
    complete: bool = False
    success: bool = False
    created_at: float | None = None
    parent: str | None = None
    #: event → when it fired
    fired: dict[str, float] = field(default_factory=dict)


def status(bid: str, redis=None, keys=None) -> BatchStatus | None:
    """The batch ``bid``, or None when unknown or expired."""
    if redis is None:
        redis, keys = default().redis, default().keys
    record = keys.batch(bid)
    pipe = redis.pipeline(transaction=True)
    pipe.hgetall(record).scard(record + ":pending").hgetall(record + ":failed")
    pipe.smembers(record + ":dead")
    fields, pending, failures, dead = pipe.execute()
    if not fields or "sealed" not in fields:
        return None
    fired = {event: float(fields[f"fired_{event}"]) for event in EVENTS
             if f"fired_{event}" in fields}
    return BatchStatus(bid=bid, description=fields.get("description"),
                       total=int(fields.get("total", 0)), pending=pending,
                       failures=len(failures), failed_jids=failures, dead_jids=sorted(dead),
                       complete="complete" in fired, success="success" in fired,
                       created_at=float(fields["created_at"]) if "created_at" in fields
                       else None, parent=fields.get("parent"), fired=fired)
