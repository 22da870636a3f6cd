"""The cluster layout's batch steps: what ``batch_scripts.py`` does in one script call, as
ordered steps, since a member's queue, its batch tree (tag ``{b:<root bid>}``), the dead set
and a callback's queue are in different hash slots. Each step is idempotent or checked, so
nothing is lost and a crash between steps costs at most a second push (at-least-once).

A member's end (success, retry, death, expiry, cancel), in the worker:

1. held? A job with a private list must still be in it (``LPOS``), or it was taken back (the
   shutdown deadline, recovery) and counts nothing: the run that follows counts, as in the
   default layout.
2. count, in the tree's slot (``COUNT_SUCCESS``, ``COUNT_END``): by jid in sets, so a second
   count of the same end changes nothing. An event that becomes due is marked
   ``fired_<event>`` and ``firing_<event>`` = the member's jid; the call returns the callbacks
   still marked with that jid (this call's, or those of an earlier run of the same member
   whose process died before step 5).
3. the retry's ``ZADD``, or the burial in ``dead`` of a job that stays in its private list
   until its acknowledgement: before the pushes, so that a callback sees its member where it
   went, as in the one-script layout.
4. push a chain's next step and the due callbacks (their jids fixed at the commit); a
   succeeded batch leaves the index ``forkq:{meta}:batches``.
5. the job leaves its private list: the acknowledgement (``LREM``), or the burial of a job
   moved from it (a poison or expired job), which comes after the pushes because it ends
   what recovery could count again.
6. clear ``firing_<event>``.

A crash before step 5 leaves the job in its private list: it is recovered, runs again, and its
end repeats the steps; step 2 counts nothing new and hands back the callbacks its first call
marked, so they are pushed (perhaps a second time), and its retry or burial of step 3 may be
written twice. A chain's next step may likewise be pushed twice.

The commit, in the producer (``batch.Batch``): the record unsealed with its jids
(``WRITE``), then the members pushed (one push per queue), then ``SEAL``, which lets events
fire (members that ended meanwhile were counted, and fire nothing while unsealed) and fires
what is already due; then the index entry. A producer killed mid-commit leaves a batch that
never fires: unsealed (it expires with its ``expires_in``), or sealed with callbacks marked
fired that nobody pushes (those the seal fired: an empty batch, or one whose members all
ended before the seal).
"""

from __future__ import annotations

import time
from typing import Any

from ..connection import send_commands
from ..connection.scripts import Script
from ..dead import DeadWriter
from ..payload import dumps, home_named
from .batch_lua import BATCH_LUA

# the callbacks marked firing by this call's member (firer), in bid and its ancestors:
# five strings each (bid, event, text or '', queue name, queue key)
DUE_LUA = BATCH_LUA + """
local function due_from(prefix, bid)
  local out = {}
  local events = {'death', 'complete', 'success'}
  while bid do
    local rec = prefix .. bid
    local f = redis.call('HMGET', rec, 'firing_death', 'firing_complete', 'firing_success',
                         'parent', 'cb_queue', 'cb_queue_key')
    for i, event in ipairs(events) do
      if f[i] == firer then
        for _, v in ipairs({bid, event, callback_of(rec, event) or '', f[5] or '', f[6] or ''}) do
          out[#out + 1] = v
        end
      end
    end
    bid = f[4]
  end
  return out
end
local prefix, bid = ARGV[1], ARGV[2]
firer = ARGV[3]
if redis.call('EXISTS', prefix .. bid) == 0 then return {} end
"""

# KEYS: the record. ARGV: prefix, bid, jid, header index ('' none), value JSON, next step's
# jid ('' none)
COUNT_SUCCESS = Script(DUE_LUA + """
count_success(prefix, bid, firer, ARGV[4], ARGV[5], ARGV[6], '', '', now_text())
return due_from(prefix, bid)
""")

# KEYS: the record. ARGV: prefix, bid, jid, action, error
COUNT_END = Script(DUE_LUA + """
count_end(prefix, bid, firer, ARGV[4], ARGV[5], '', '', now_text())
return due_from(prefix, bid)
""")

# KEYS: the record. ARGV: prefix, bid, firer (the commit's), parent ('' none), children
# committed with it, whether its parent counted it (1/0)
SEAL = Script(DUE_LUA + """
seal(prefix, bid, ARGV[4], ARGV[5], ARGV[6] == '1')
settle_up(prefix, '', '', bid, now_text())
return due_from(prefix, bid)
""")

# KEYS: the record. ARGV: prefix, bid, reopen (1/0), expires_in, then ``write_record``'s
WRITE = Script(BATCH_LUA + """
local rec = ARGV[1] .. ARGV[2]
if ARGV[3] == '1' and redis.call('HEXISTS', rec, 'sealed') == 0 then
  return redis.error_reply('no batch ' .. ARGV[2] .. ' (unknown, or its record expired)')
end
write_record(rec, 5)
record_ttl(rec, ARGV[3] == '1', ARGV[4])
return 1
""")


def write_record(redis, keys, bid: str, jids: list[str], fields: dict[str, Any], *,
                 reopen: bool, expires_in: float) -> None:
    """The commit's first step: the record (unsealed, unless reopened) and its jids."""
    args: list = [keys.batch_prefix(bid), bid, 1 if reopen else 0, int(expires_in),
                  len(fields)]
    for name, value in fields.items():
        args += [name, value if isinstance(value, str) else dumps(value)]
    WRITE(redis, [keys.batch(bid)], [*args, len(jids), *jids])


def seal(redis, keys, bid: str, *, parent: str, created_at: float, children: int,
         counted: bool) -> None:
    """The commit's last step, once the members are pushed: fire what is due already, and
    list the batch as open unless it succeeded."""
    due = _count(redis, keys, SEAL, bid, f"commit:{bid}",
                 [parent, children, 1 if counted else 0])
    commands = _pushes(keys, due)
    if not any(event == "success" for _, event, *_ in due):
        commands.append(("ZADD", keys.batches, repr(created_at), bid))
    send_commands(redis, commands)
    _settled(redis, keys, due)


def succeeded(redis, keys, payload: dict[str, Any], ack: tuple[str, str], value_json: str,
              after: tuple[str, str, str] | None) -> int:
    """``batch_scripts.succeeded`` in steps; 0 when the job was no longer held."""
    held, text = ack
    if text and redis.lpos(held, text) is None:
        return 0
    index = payload.get("chord_index")
    due = _count(redis, keys, COUNT_SUCCESS, payload.get("bid") or "", payload.get("jid", ""),
                 ["" if index is None else str(index), value_json or "null",
                  after[2] if after else ""])
    commands = _pushes(keys, due)
    if after:
        queue, step, _ = after
        commands += [("SADD", keys.queues, queue), ("LPUSH", keys.queue(queue), _enqueued(step))]
    send_commands(redis, commands)
    if text:
        redis.lrem(held, 1, text)
    _settled(redis, keys, due)
    return 1


def ended(redis, keys, payload: dict[str, Any], action: str, write: tuple[str, float, bool],
          trim_args: list, error: str, source: tuple[str, str]) -> int:
    """``batch_scripts.ended`` in steps: ``write`` is the job's (text, score, bury), buried
    by ``dead.DeadWriter`` with the limits of ``trim_args`` (``DeadWriter.trim_args``); a
    ``source`` (list, text) is the private list a poison or expired job leaves after its
    burial (the writer's two steps); 0 when it was no longer there."""
    if source[1] and redis.lpos(source[0], source[1]) is None:
        return 0
    due = _count(redis, keys, COUNT_END, payload.get("bid") or "", payload.get("jid", ""),
                 [action, error])
    text, score, bury = write
    now, cutoff, max_jobs = trim_args
    dead = DeadWriter(keys, int(max_jobs), float(now) - float(cutoff))
    if action == "retry":
        redis.zadd(keys.retry_for(home_named(keys, payload)), {text: score})
    elif bury and not source[1]:
        dead.add(redis, [text], score)
    send_commands(redis, _pushes(keys, due))
    if bury and source[1]:
        dead.move_from_list(redis, source[0], [(source[1], text)], score)
    elif source[1]:
        redis.lrem(source[0], 1, source[1])
    _settled(redis, keys, due)
    return 1


def _count(redis, keys, script: Script, bid: str, firer: str, args: list) -> list[list[str]]:
    """Step 2: the callbacks due, as [bid, event, text, queue, queue key]."""
    if not bid:
        return []
    flat = script(redis, [keys.batch(bid)], [keys.batch_prefix(bid), bid, firer, *args])
    return [flat[i:i + 5] for i in range(0, len(flat), 5)]


def _pushes(keys, due: list[list[str]]) -> list[tuple]:
    commands: list[tuple] = []
    for bid, event, text, queue, queue_key in due:
        if text:
            commands += [("SADD", keys.queues, queue), ("LPUSH", queue_key, _enqueued(text))]
        if event == "success":
            commands.append(("ZREM", keys.batches, bid))
    return commands


def _enqueued(text: str) -> str:
    """A job's text (built without ``enqueued_at``) with it spliced in, never re-encoded."""
    return f'{text[:-1]},"enqueued_at":{time.time()!r}}}'


def _settled(redis, keys, due: list[list[str]]) -> None:
    """Step 6: the pushes are done; a later count of the same member hands back nothing."""
    if due:
        send_commands(redis, [("HDEL", keys.batch(bid), f"firing_{event}")
                              for bid, event, *_ in due])
