"""The batch scripts: a batch's commit, and each member's end counted in the same script as
that end (``flow/batch.py`` has the semantics and the client side).

A member's end is one script call, atomic with the job's own terminal transition:

- success (``succeeded``): the job leaves the thread's private list (``LREM``: the
  acknowledgement) and, only if it was still there, leaves the batch's ``pending`` and
  ``unrun`` sets; a chain's next step is pushed in the same call. A job pushed back at the
  shutdown deadline, or already recovered by another process, is no longer in the list: the
  call counts nothing and the job counts when it runs again.
- failure (``failed``): the retry written (``ZADD retry``) or the job buried (``dead.DEAD_LUA``)
  and the job leaves ``unrun`` and enters the ``failed`` hash (and ``dead`` when it died). A
  poison job (``worker/recovery.py``) leaves its dead process's private list in the same call.
- cancel (``cancelled``, from ``flow/cancel.ended_cancelled``): the job leaves ``unrun`` and
  enters ``failed`` with the reason, but stays ``pending``: the batch can complete and never
  succeeds; it is not dead (no ``death`` callback).

Counting by jid in sets makes each count idempotent: a job retried ten times, or run again
after kill -9, leaves ``pending`` once. After each change ``settle_up`` fires what became
due, each event at most once (``HSETNX fired_<event>``), then walks up to the parent batch
when a child completed or succeeded. A callback is pushed by the same call, its JSON text
built at the commit, ``enqueued_at`` spliced in here (never decoded and re-encoded).

The Lua pieces are ``batch_lua.py``'s. In the cluster layout the keys of one call would cross
hash slots: ``succeeded`` and ``ended`` hand over to ``batch_cluster.py``, which runs the same
counts as ordered, idempotent steps.

Runs in the worker's processor threads and coroutine finisher; the commit in the producer.
"""

from __future__ import annotations

import json
from typing import Any

from ..connection import run_script
from ..connection.scripts import Script
from ..dead import DEAD_LUA
from ..errors import MalformedJobError
from ..payload import dumps, error_class_name
from . import batch_cluster
from .batch_lua import BATCH_LUA

# KEYS: queues, batches. ARGV: prefix, bid, parent ('' none), expires_in, created_at,
# reopen (1/0), children committed with it (counted here, before they are written), whether
# its parent already counted it (1/0), field count n, n field/value pairs, jid count m, the m
# jids joining the batch,
# then the push commands as data (``push.commands``: name, key, argument count, arguments),
# run only once the batch is known to exist, so a refused reopen pushes nothing.
OPEN_SCRIPT = BATCH_LUA + """
local prefix, bid, parent = ARGV[1], ARGV[2], ARGV[3]
local rec = prefix .. bid
if ARGV[6] == '1' and redis.call('HEXISTS', rec, 'sealed') == 0 then
  return redis.error_reply('no batch ' .. bid .. ' (unknown, or its record expired)')
end
local i = write_record(rec, 9)
while i <= #ARGV do
  local count = tonumber(ARGV[i + 2])
  redis.call(ARGV[i], ARGV[i + 1], unpack(ARGV, i + 3, i + 2 + count))
  i = i + 3 + count
end
if ARGV[6] == '0' then
  seal(prefix, bid, parent, ARGV[7], ARGV[8] == '1')
  redis.call('ZADD', KEYS[2], ARGV[5], bid)
end
record_ttl(rec, ARGV[6] == '1', ARGV[4])
settle_up(prefix, KEYS[1], KEYS[2], bid, now_text())
return 1
"""

# KEYS: queues, batches, private list, next step's queue. ARGV: prefix, bid ('' none), jid,
# job text ('' when there is no private list: basic fetch), header index ('' none), value
# JSON, next step's text ('' none), its queue name, its jid. Returns 0 when the job was no
# longer in the private list (nothing counted, nothing pushed).
SUCCEEDED_SCRIPT = BATCH_LUA + """
if ARGV[4] ~= '' and redis.call('LREM', KEYS[3], 1, ARGV[4]) == 0 then return 0 end
local now, prefix, bid = now_text(), ARGV[1], ARGV[2]
if ARGV[7] ~= '' then push_text(KEYS[1], ARGV[8], KEYS[4], ARGV[7], now) end
if bid ~= '' and redis.call('EXISTS', prefix .. bid) == 1 then
  count_success(prefix, bid, ARGV[3], ARGV[5], ARGV[6], ARGV[7] ~= '' and ARGV[9] or '',
                KEYS[1], KEYS[2], now)
end
return 1
"""

# KEYS: queues, batches, retry, dead, source list (a poison job's private list). ARGV:
# prefix, bid, jid, action ('retry', 'dead', 'drop', 'discard', 'cancel'), job text, score,
# bury (1/0), then dead_trim's now, cutoff, max jobs, then the error for the batch's failure
# list, then the job's text in the source list ('' none). Returns 0 when it was no longer there.
FAILED_SCRIPT = BATCH_LUA + DEAD_LUA + """
local prefix, bid, jid, action = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if ARGV[12] ~= '' and redis.call('LREM', KEYS[5], 1, ARGV[12]) == 0 then return 0 end
if action == 'retry' then
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
elseif ARGV[7] == '1' then
  dead_add(KEYS[4], ARGV[6], ARGV[5])
  dead_trim(KEYS[4], ARGV[9], ARGV[10])
end
if bid == '' or redis.call('EXISTS', prefix .. bid) == 0 then return 1 end
count_end(prefix, bid, jid, action, ARGV[11], KEYS[1], KEYS[2], now_text())
return 1
"""

OPEN, SUCCEEDED, FAILED = Script(OPEN_SCRIPT), Script(SUCCEEDED_SCRIPT), Script(FAILED_SCRIPT)


def open_command(keys, bid: str, jids: list[str], fields: dict[str, Any],
                 pushes: list[tuple], *, parent: str = "", expires_in: float = 0,
                 created_at: float = 0, reopen: bool = False, children: int = 0,
                 counted: bool = False) -> tuple:
    """The commit's script call, which runs ``pushes`` (``push.commands``) once the record is
    written; ``children``: child batches committed after it in the same ``MULTI``, which are
    ``counted`` by it. An ``EVAL`` carrying its text: in a ``MULTI`` a NOSCRIPT could not be
    answered by a second send."""
    args: list = [keys.batch_prefix(bid), bid, parent, int(expires_in), repr(created_at),
                  1 if reopen else 0, children, 1 if counted else 0, len(fields)]
    for name, value in fields.items():
        args += [name, value if isinstance(value, str) else dumps(value)]
    args += [len(jids), *jids]
    for name, key, *rest in chunked(pushes):
        args += [name, key, len(rest), *rest]
    return ("EVAL", OPEN.text, 2, keys.queues, keys.batches, *args)


#: arguments of one command the commit script runs (Lua's ``unpack`` stops near 8,000)
CHUNK = 1000


def chunked(commands: list[tuple]) -> list[tuple]:
    """``commands`` with each long ``LPUSH``/``SADD``/``ZADD`` cut into several of at most
    ``CHUNK`` arguments; the same keys, members and list order as the long one."""
    out: list[tuple] = []
    for name, key, *rest in commands:
        step = CHUNK - CHUNK % 2 if name == "ZADD" else CHUNK  # ZADD takes (score, member)
        if name not in ("LPUSH", "SADD", "ZADD") or len(rest) <= step:
            out.append((name, key, *rest))
            continue
        out += [(name, key, *rest[i:i + step]) for i in range(0, len(rest), step)]
    return out


def succeeded(redis, keys, payload: dict[str, Any], ack: tuple[str, str],
              value_json: str = "", after: tuple[str, str, str] | None = None) -> int:
    """Count a member's success, atomically with its acknowledgement ``ack`` (private list,
    job text; text '' without a private list) and the push of ``after`` (queue, text, jid),
    a chain's next step; 0 when the job was no longer held (nothing done)."""
    if keys.layout == "cluster":
        return batch_cluster.succeeded(redis, keys, payload, ack, value_json, after)
    queue, text, next_jid = after or ("", "", "")
    bid, index = payload.get("bid") or "", payload.get("chord_index")
    return int(run_script(
        redis, SUCCEEDED,
        [keys.queues, keys.batches, ack[0] or keys.batches,
         keys.queue(queue) if queue else keys.batches],
        [keys.batch_prefix(bid), bid, payload.get("jid", ""), ack[1],
         "" if index is None else str(index), value_json or "null", text, queue, next_jid]))


def failed(redis, keys, payload: dict[str, Any], outcome, trim_args: list,
           source: tuple[str, str] = ("", "")) -> int:
    """Write a member's retry or death (``retry.Outcome``) and count it, in one call; with a
    ``source`` (list, text), only if the job was still in that list, which it leaves."""
    failed_job = json.loads(outcome.text)
    error = f"{failed_job.get('error_class')}: {failed_job.get('error_message')}"
    return ended(redis, keys, payload, outcome.decision.action, outcome.text, outcome.score,
                 outcome.bury, trim_args, error, source)


def malformed(redis, keys, member: dict[str, str], reason: str,
              burial: tuple[str, float, list] | None = None) -> int:
    """A malformed member (``payload.batch_member``: its bid and jid) counted dead in its
    batch; with ``burial`` (its dead-set text, score and ``DeadWriter.trim_args``) buried in
    the same call."""
    error = f"{error_class_name(MalformedJobError(reason))}: {reason}"
    text, score, trim_args = burial or ("", 0.0, [0, 0, 0])
    return ended(redis, keys, member, "dead", text, score, burial is not None, trim_args, error,
                 ("", ""))


def expired(redis, keys, payload: dict[str, Any], source: tuple[str, str]) -> int:
    """A member discarded unstarted (``expires_in``): out of its private list (``source``) and
    counted as dead in its batch, in one call; it can no longer succeed."""
    error = f"expired: not started within expires_in {payload.get('expires_in')} s"
    return ended(redis, keys, payload, "discard", "", 0.0, False, [0, 0, 0], error, source)


def cancelled(redis, keys, payload: dict[str, Any]) -> int:
    """Count a member ended as cancelled: done (out of ``unrun``), not success (still
    ``pending``), not dead. Counting by jid makes a second count of the same end harmless."""
    return ended(redis, keys, payload, "cancel", "", 0.0, False, [0, 0, 0],
                 "Cancelled: cancelled (forkq.cancel)", ("", ""))


def ended(redis, keys, payload: dict[str, Any], action: str, text: str, score: float,
          bury: bool, trim_args: list, error: str, source: tuple[str, str]) -> int:
    if keys.layout == "cluster":
        return batch_cluster.ended(redis, keys, payload, action, (text, score, bury),
                                   trim_args, error, source)
    bid = payload.get("bid") or ""
    return int(FAILED(redis, [keys.queues, keys.batches, keys.retry, keys.dead,
                              source[0] or keys.dead],
                      [keys.batch_prefix(bid), bid, payload.get("jid", ""), action, text,
                       repr(score), 1 if bury else 0, *trim_args, error, source[1]]))
