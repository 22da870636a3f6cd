"""Cancelling a job by jid: ``forkq.cancel(jid)``, and what a worker process knows of cancels.

``cancel`` runs in any process (an application, ``forkqctl``, the web UI through ``forkq.api``).
Its steps:

1. *Mark*: add the jid to the zset ``forkq:cancels`` (score: Redis' clock), which every worker
   process's control watch reads twice a second (``control.py``); while the zset is not
   empty, every fetch script checks the jobs it takes against it (``worker/fetch.py``: a jid
   match and a ``ZSCORE`` per job). A mark goes when its job ends as cancelled, else after
   ``KEEP`` seconds.
2. *Remove*: look for the job where it may wait, in the direction jobs move (scheduled, retry,
   then each queue of the directory and of the workers' slot records; in the cluster layout
   the ``schedule`` and ``retry`` sets of each of those queues), and remove it where found:
   sorted sets by ``ZSCAN`` with a pattern, lists ``SCAN_COUNT`` entries per script call, so
   that no call blocks Redis long however long the queue. Candidates are matched by decoding
   their JSON, not by text alone. A removed job ends as cancelled here (``ended_cancelled``)
   and its mark is dropped.
3. *Running*: otherwise, when a worker's private list (reliable fetch) holds the job, it is
   ``"running"``: the worker learns of the mark within about a second and interrupts it
   (``Cancelled`` in its thread, or its coroutine's task cancelled), or drops it before it
   starts (a batch's later job, or a job fetched after the mark: the fetch flags it). In the
   cluster layout the fetch flags nothing (its call is per queue, the marks are in the meta
   slot): the processor checks the process's copy of the marks before each job, so a job
   fetched before the watch's next look (about half a second) starts, and is interrupted
   as a running one.

A job found nowhere (``None``: finished, unknown, or moving between two places as the search
passed) is still caught by its mark if it is fetched within ``KEEP`` seconds; when its result
record says it ended, the mark is dropped at once. What a job
cancelled by a worker leaves is written by ``ended_cancelled`` too: the result record (if kept)
says ``cancelled``, its unique lock is released, the counter ``forkq:cancelled`` (the metric
``forkq_jobs_cancelled_total``) goes up; it is never retried and never dead.

Worker side: ``CancelView`` is one worker process's copy of the recent marks, fed by the
control watch, read by the processors (``requested``, no round trip) and told to the runners
that interrupt running jobs (``listen``).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Callable

from . import chain, placement, unique
from ..connection.scripts import Script
from ..connection.source import default_source
from ..results import FINAL, ResultRecorder

#: seconds a cancel's mark is kept: a job in motion when it was cancelled (between two places,
#: or retried as it was cancelled) is dropped if it is fetched within this time
KEEP = 3600.0
#: list entries one script call looks at
SCAN_COUNT = 1000

MARK = Script("""
-- KEYS: cancels zset. ARGV: jid, seconds to keep marks. Returns the mark's time.
local now = redis.call('TIME')
local at = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', at - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], at, ARGV[1])
return tostring(at)
""")

TAKE_FROM_LIST = Script("""
-- Remove the job ARGV[1] (a jid) from the list KEYS[1] if it is among the ARGV[3] entries from
-- index ARGV[2]. Returns {removed job or false, next index or -1 at the end}.
local first, count = tonumber(ARGV[2]), tonumber(ARGV[3])
local items = redis.call('LRANGE', KEYS[1], first, first + count - 1)
for _, item in ipairs(items) do
  if string.find(item, ARGV[1], 1, true) then
    local ok, job = pcall(cjson.decode, item)
    if ok and type(job) == 'table' and job.jid == ARGV[1] then
      redis.call('LREM', KEYS[1], 1, item)
      return {item, -1}
    end
  end
end
if #items < count then return {false, -1} end
return {false, first + #items}
""")

FIND_IN_LISTS = Script("""
-- Whether one of the lists KEYS holds the job ARGV[1] (a jid): workers' private lists.
for _, key in ipairs(KEYS) do
  for _, item in ipairs(redis.call('LRANGE', key, 0, -1)) do
    if string.find(item, ARGV[1], 1, true) then
      local ok, job = pcall(cjson.decode, item)
      if ok and type(job) == 'table' and job.jid == ARGV[1] then return 1 end
    end
  end
end
return 0
""")


def cancel(jid: str, source=None) -> str | None:
    """Cancel job ``jid`` on ``source``'s Redis (default, forkq's); returns where it was
    found: ``"scheduled"``, ``"retry"``, ``"queued"``, ``"running"`` or None."""
    if not isinstance(jid, str) or not jid or '"' in jid or "\\" in jid:
        raise TypeError(f"forkq.cancel: jid must be a job id (a non-empty string without "
                        f"quotes or backslashes), not {jid!r}")
    source = source or default_source()
    redis, keys = source.redis, source.keys
    MARK(redis, [keys.cancels], [jid, KEEP])
    slots = _slot_records(redis, keys)
    names = sorted(set(redis.smembers(keys.queues)).union(
        *(queues for _, queues in slots.values())))
    for where, key_of in (("scheduled", keys.schedule_for), ("retry", keys.retry_for)):
        # one set in the default layout, one per queue in the cluster layout
        for key in dict.fromkeys([key_of(name) for name in names] or [key_of("default")]):
            text = _take_from_set(redis, key, jid)
            if text is not None:
                return _removed(redis, keys, jid, text, where)
    for name, lists in placement.waiting_lists(redis, keys, names).items():
        for key in lists:
            text = _take_from_list(redis, key, jid)
            if text is not None:
                return _removed(redis, keys, jid, text, "queued")
    if _running(redis, keys, slots, jid):
        return "running"
    _found_nowhere(redis, keys, jid)
    return None


def _take_from_set(redis, key: str, jid: str) -> str | None:
    pattern = "*" + re.sub(r"([*?\[\]\\])", r"\\\1", jid) + "*"
    for member, _ in redis.zscan_iter(key, match=pattern, count=SCAN_COUNT):
        if _jid_of(member) == jid and redis.zrem(key, member):
            return member
    return None


def _take_from_list(redis, key: str, jid: str) -> str | None:
    start = 0
    while start >= 0:
        text, start = TAKE_FROM_LIST(redis, [key], [jid, start, SCAN_COUNT])
        if text:
            return text
    return None


def _slot_records(redis, keys) -> dict[str, tuple[int, list[str]]]:
    """Every slot known (``forkq:slots``) → its thread count and queue names."""
    slots = {}
    for slot, record in redis.hgetall(keys.slots).items():
        try:
            fields = json.loads(record)
            threads, queues = int(fields.get("threads", 0)), fields.get("queues") or []
        except (ValueError, AttributeError, TypeError):
            continue
        slots[slot] = threads, [name for name in queues if isinstance(name, str)]
    return slots


def _running(redis, keys, slots: dict[str, tuple[int, list[str]]], jid: str) -> bool:
    """Whether a private list of a slot holds the job: one script call per hash slot (one in
    the default layout, one per queue in the cluster layout, where the lists are per queue)."""
    by_queue: dict[str | None, list[str]] = {}
    for slot, (threads, queues) in slots.items():
        for key in keys.private_lists(slot, threads, queues):
            by_queue.setdefault(keys.home_queue(key), []).append(key)
    return any(FIND_IN_LISTS(redis, lists, [jid]) for lists in by_queue.values())


def _removed(redis, keys, jid: str, text: str, where: str) -> str:
    ended_cancelled(redis, keys, json.loads(text))
    return where


def _found_nowhere(redis, keys, jid: str) -> None:
    """Drop the mark when the job's result record says it ended: nothing left to catch."""
    record = ResultRecorder.read(redis, keys, jid)
    if record is not None and record.get("status") in FINAL:
        redis.zrem(keys.cancels, jid)


def _jid_of(text: str) -> Any:
    try:
        return json.loads(text).get("jid")
    except (ValueError, AttributeError):
        return None


def ended_cancelled(redis, keys, payload: dict[str, Any], record: dict | None = None) -> None:
    """What a cancelled job leaves, written by whoever ended it: the result record (when the
    payload keeps one; ``record``: the one its runner wrote at start), the unique lock released,
    the cancel counter; its mark is dropped (nothing left to catch: the fetch check goes quiet
    again); a batch, chain or chord member's end is counted there (``chain.cancelled``)."""
    if "result_ttl" in payload:
        ResultRecorder(keys).cancelled(redis, payload, record)
    if chain.member(payload):
        chain.cancelled(redis, keys, payload)
    unique.release_at(redis, keys, payload, "cancelled")
    pipe = redis.pipeline(transaction=False)
    pipe.incr(keys.cancelled)
    pipe.zrem(keys.cancels, str(payload.get("jid")))
    pipe.execute()


def among(payload: dict[str, Any], jids: set[str]) -> bool:
    """Whether the payload's jid (any JSON value, from a buggy producer too) is in ``jids``."""
    jid = payload.get("jid")
    return isinstance(jid, str) and jid in jids


class CancelView:
    """One worker process's copy of the recent marks (jid → mark time), fed by the control
    watch (``learn``); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[str, float] = {}
        self._listeners: list[Callable[[set[str]], None]] = []
        #: whether Redis held any mark at the last look (the fetch checks jobs then)
        self.marked = False
        #: whether this process knows of any mark: else ``requested`` is False for every jid,
        #: and a processor thread skips asking it (a Python call a job)
        self.known = False

    def requested(self, jid: Any) -> bool:
        """Whether ``jid`` was cancelled (as of the last look, at most about a second ago); a
        jid that is not a string (a producer's bug) never is."""
        return isinstance(jid, str) and jid in self._marks

    def listen(self, callback: Callable[[set[str]], None]) -> None:
        """Call ``callback(jids)`` with each look's new marks (in the control watch's thread)."""
        with self._lock:
            self._listeners.append(callback)

    @property
    def latest(self) -> float:
        """The time of the newest mark known, 0 with none."""
        with self._lock:
            return max(self._marks.values(), default=0.0)

    def learn(self, marks: list[tuple[str, float]], now: float, kept: int | None = None) -> bool:
        """Take the marks read (jid, time) and the number ``kept`` in Redis (None: as many as
        read); forget those older than ``KEEP`` at ``now``; tell the listeners the new ones.
        True when a mark read was past ``KEEP`` (to trim)."""
        self.marked = bool(len(marks) if kept is None else kept)
        with self._lock:
            new = {jid for jid, _ in marks if jid not in self._marks}
            self._marks.update(marks)
            old = [jid for jid, at in self._marks.items() if at < now - KEEP]
            for jid in old:
                del self._marks[jid]
            self.known = bool(self._marks)
            listeners = list(self._listeners)
        if new:
            for callback in listeners:
                callback(new)
        return bool(old)
