"""Chains and chords: jobs run in order passing results along, and a fan-out whose callback
gets the list of results.

```
jid = forkq.chain(Fetch.s(url), Parse.s(), Store.si("pages")).perform_async()
jid = forkq.chord([Score.s(i) for i in range(100)], Summarize.s()).perform_async()
```

``Job.s(*args, **options)`` is a ``Signature``; ``.si`` an immutable one, which does not take
the previous step's value. Every step's payload is built and checked at ``perform_async``,
with its jid, so the chain's jid (its last step's) is known at once. The first step carries
the rest in its payload field ``chain`` (a list of ``{"job": payload, "pass": bool}``); when
a step succeeds, the worker builds the next step's text (its value prepended to the args
unless immutable) and pushes it in the script that acknowledges the step
(``batch_scripts.succeeded``): a step pushed back at shutdown or recovered after kill -9
pushes nothing, and a step is pushed once per acknowledged success. A step that dies stops
the chain: the later steps are never pushed and the last step's result is ``failed`` with
that error.

A chord is a batch (``batch.py``) whose members carry ``chord_index``: each header job's
value is stored with its success count, and the batch's success pushes the callback with the
values in header order as its first argument (``batch_scripts.chord_text``). A header job that
dies means the callback never runs and its result is ``failed``.

The final step's result (a chain's last step, a chord's callback) is kept for its
``result_ttl``, or ``RESULT_TTL`` when it sets none, so ``forkq.result(jid)`` can read it.
This module also holds the worker's glue for a workflow member's end (``member``,
``checked``, ``succeeded``, ``stopped``), called by ``worker/outcome.py``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from ..client import default
from ..options import validate_options
from ..payload import dumps
from . import batch, batch_scripts, context

#: seconds a chain's or chord's final result is kept when its job sets no result_ttl
RESULT_TTL = 86400


class Signature:
    """A job with its arguments and options, to run later as a chain step or chord part."""

    def __init__(self, job_class: type, args: tuple, options: dict[str, Any],
                 immutable: bool = False) -> None:
        validate_options(options, f"{job_class.wire_name()}.s")
        self.job_class, self.args, self.options = job_class, list(args), options
        self.immutable = immutable

    def __repr__(self) -> str:
        mark = "si" if self.immutable else "s"
        return f"{self.job_class.wire_name()}.{mark}({', '.join(map(repr, self.args))})"

    def prepare(self, client, takes_value: bool, final: bool = False):
        """The checked payload (``client.Prepared``); ``takes_value``: the args lack the value
        to come, which the arity check counts."""
        options = dict(self.options)
        if final and "result_ttl" not in {**self.job_class.options, **options}:
            options["result_ttl"] = RESULT_TTL
        placeholder = [None] if takes_value else []
        where = f"{self!r} in a workflow"
        prepared = client.prepare(self.job_class, placeholder + self.args, options, where=where)
        if takes_value:
            prepared.payload["args"] = prepared.payload["args"][1:]
        return prepared


def _signatures(items, what: str) -> list[Signature]:
    for index, item in enumerate(items):
        if not isinstance(item, Signature):
            raise TypeError(f"{what}: item {index} is a {type(item).__name__}; pass signatures "
                            f"(Job.s(...) or Job.si(...))")
    return list(items)


class Chain:
    """``forkq.chain(*signatures)``: run the steps one after another."""

    def __init__(self, *steps: Signature) -> None:
        self.steps = _signatures(steps, "forkq.chain")
        if not self.steps:
            raise ValueError("forkq.chain needs at least one step")

    def perform_async(self) -> str | None:
        """Push the first step (joining an open batch block, as any push); the last step's
        jid, or None when client middleware refused the push."""
        client = default()
        last = len(self.steps) - 1
        prepared = [step.prepare(client, index > 0 and not step.immutable, index == last)
                    for index, step in enumerate(self.steps)]
        first = prepared[0]
        if last > 0:
            first.payload["chain"] = [{"job": item.payload, "pass": not step.immutable}
                                      for step, item in zip(self.steps[1:], prepared[1:])]
        final = prepared[-1].payload
        record_queued(client, final)
        return final["jid"] if client.push_prepared(first) else None


class Chord:
    """``forkq.chord(header, callback)``: the header jobs in parallel, then the callback with
    the list of their values, in header order, as its first argument (unless immutable)."""

    def __init__(self, header, callback: Signature, **batch_options: Any) -> None:
        self.header = _signatures(header, "forkq.chord")
        (self.callback,) = _signatures([callback], "forkq.chord callback")
        taken = {"on_success", "callback_queue"} & set(batch_options)
        if taken:
            raise TypeError(f"forkq.chord: {', '.join(sorted(taken))} is the chord's own (its "
                            f"callback, on its queue); set the callback's queue with "
                            f"{callback!r}'s options")
        self.batch_options = batch_options

    def perform_async(self) -> str:
        """Push the header as one batch; the callback's jid."""
        client = default()
        takes = not self.callback.immutable
        payload = self.callback.prepare(client, takes, final=True).payload
        group = batch.Batch(callback_queue=payload["queue"], **self.batch_options)
        group.chord = chord_parts(payload, len(self.header), takes)
        about = {key: payload[key] for key in ("jid", "class", "args", "result_ttl")}
        with group:
            for index, step in enumerate(self.header):
                item = step.prepare(client, False)
                item.payload.update(chord_index=index, chord_callback=about)
                client.push_prepared(item)
        record_queued(client, payload)
        return payload["jid"]


def chord_parts(payload: dict[str, Any], size: int, takes_value: bool) -> tuple[str, str, int]:
    """The callback's JSON text around its first argument (the header's values), for the
    success script to splice them in: ``(head, tail, size)``."""
    marker = f"forkq-chord-values-{payload['jid']}"
    text = dumps({**payload, "args": ([marker] if takes_value else []) + payload["args"]})
    if not takes_value:
        return text, "", -1
    head, tail = text.split(f'"{marker}"', 1)
    return head, tail, size


def record_queued(client, payload: dict[str, Any]) -> None:
    """The final job's result record, ``queued``, before any step runs."""
    from .. import results

    commands = results.queued_commands(client.keys, payload, time.time())
    if commands and client.sink is None:
        client.redis.execute_command(*commands[0])


# --- the worker's side, called by ``worker/outcome.py``

def member(payload: dict[str, Any]) -> bool:
    """Whether a job's end is a batch's, chain's or chord's business."""
    return "bid" in payload or "chain" in payload


def checked(payload: dict[str, Any], perform: Callable[[], Any]) -> Any:
    """Run ``perform`` as a batch job (a batch it opens is a child) and check that a value
    the workflow passes on is JSON."""
    token = context.running(payload)
    try:
        value = perform()
    finally:
        context.done(token)
    return check_value(payload, value)


async def checked_async(payload: dict[str, Any], perform) -> Any:
    token = context.running(payload)
    try:
        value = await perform()
    finally:
        context.done(token)
    return check_value(payload, value)


def check_value(payload: dict[str, Any], value: Any) -> Any:
    """A value passed to a next step or a chord's callback must be JSON (raising here fails
    the job, which is retried: better than a chain that cannot go on)."""
    if "chain" not in payload and "chord_index" not in payload:
        return value
    try:
        _refuse_non_finite(value)
        dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{payload['class']} returned a {type(value).__qualname__}, which "
                        f"cannot be passed to the next step of its workflow ({exc}); return "
                        f"JSON-native values") from None
    return value


def _refuse_non_finite(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not JSON")
    for item in value.values() if isinstance(value, dict) else \
            value if isinstance(value, (list, tuple)) else ():
        _refuse_non_finite(item)


def succeeded(redis, keys, payload: dict[str, Any], value: Any, ack: tuple[str, str]) -> int:
    """Count the success in the member's batch and push a chain's next step, with the
    acknowledgement ``ack``, in one script."""
    after = None
    steps = payload.get("chain")
    if steps:
        entry, rest = steps[0], steps[1:]
        following = dict(entry["job"])
        if entry.get("pass"):
            following["args"] = [value] + following["args"]
        if rest:
            following["chain"] = rest
        if "bid" in payload:
            following["bid"] = payload["bid"]
        following["created_at"] = time.time()
        after = (following["queue"], dumps(following), following["jid"])
    value_json = dumps(value) if "chord_index" in payload else ""
    return batch_scripts.succeeded(redis, keys, payload, ack, value_json, after)


def stopped(redis, keys, payload: dict[str, Any], exc: BaseException) -> None:
    """A member died: a chain's last step and a chord's callback will never run, so their
    result is ``failed`` with this error."""
    from ..results import ResultRecorder

    final = _final(payload)
    if final is not None:
        ResultRecorder(keys).failed(redis, final, exc, will_retry=False)


def cancelled(redis, keys, payload: dict[str, Any]) -> None:
    """A member ended as cancelled (``flow/cancel.py``): counted in its batch as done, not
    success; a chain's last step and a chord's callback will never run: their result is
    ``cancelled``."""
    from ..results import ResultRecorder

    if "bid" in payload:
        batch_scripts.cancelled(redis, keys, payload)
    final = _final(payload)
    if final is not None:
        ResultRecorder(keys).cancelled(redis, final)


def _final(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The job whose result stands for a chain's or chord's end, when ``payload`` has one."""
    if payload.get("chain"):
        return payload["chain"][-1]["job"]
    if isinstance(payload.get("chord_callback"), dict):
        return payload["chord_callback"]
    return None
