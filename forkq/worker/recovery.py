"""Orphan recovery: jobs left in the private lists of processes that died (kill -9, OOM, power).

Runs in a worker child: at boot for its own slot (the predecessor a supervisor replaced, found
at once), and from the poller for slots whose owner's heartbeat has expired (a whole host or
master gone), under a short lock so that processes do not scan together.

Private lists are keyed by slot (``host:master-pid:child-index``) and thread, plus one for the
slot's event loop (coroutine jobs, ``coroutines.py``). A list holding one job, and every job of
the event loop's list, was running when its process died: it is *charged*, and a job charged
more than ``POISON_LIMIT`` times within ``POISON_WINDOW`` goes to the dead set with the reason.
A list holding several jobs is a batch whose running job cannot be told from the prefetched or
finished ones: its jobs go back uncharged but marked, and a marked job runs alone next time
(``processor._isolate``), so a job that kills its process is charged from its second crash on.
Recovered jobs go back to the *front* of their queues, in their original order, and a list
left empty gives back its tenants' counts (``flow/fairlimit.py``); a poison job
moves from the list to the dead set in one atomic step (``DeadWriter.move_from_list``). Lists are
read as bytes, so a payload that is not UTF-8 goes back to its queue like any other (and the
worker that fetches it buries it) instead of stopping recovery.
"""

from __future__ import annotations

import functools
import json
import time

from redis.client import NEVER_DECODE

from ..flow import batch_scripts, fairlimit, placement, unique
from ..flow.placement import MARK_LUA
from ..connection.scripts import Script
from ..errors import PoisonJobError
from .fetch import queue_of
from ..log import logger
from ..payload import dumps
from .retry import ISOLATE_KEY, Decision, Outcome, run_death_handlers, with_error

#: how the event loop's private list ends (``Keys.inflight_async``)
ASYNC_SUFFIX = ":async"
#: recoveries of one job tolerated within the window; one more and it is poison
POISON_LIMIT = 3
#: seconds over which recoveries of a job are counted (72 hours)
POISON_WINDOW = 72 * 3600.0

MOVE_ONE_SCRIPT = MARK_LUA + """
-- KEYS: private list, then flow/placement.py's front keys (the list, and for a level or a
-- tenant its sorted set and set of names). ARGV: job, text to push to the front, then front's
-- score, member and queue name.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
if #KEYS > 2 then mark(KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[5]) end
return 1
"""

FORGET_SLOT_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""
MOVE_ONE, FORGET_SLOT = Script(MOVE_ONE_SCRIPT), Script(FORGET_SLOT_SCRIPT)


class Recovery:
    def __init__(self, context, death_handlers) -> None:
        self.context = context
        self.death_handlers = death_handlers
        self.redis = context.make_redis()
        self.keys = context.keys
        self._move = lambda move: MOVE_ONE(self.redis, *move)
        self._forget = functools.partial(FORGET_SLOT, self.redis)
        self.scan_every = min(30.0, max(0.5, context.config.heartbeat_ttl / 2))
        self.next_scan = 0.0

    # --- slots

    def slot_record(self) -> str:
        return json.dumps({"identity": self.context.identity,
                           "threads": self.context.config.concurrency,
                           "queues": list(self.context.queue_names)})

    def claim_slot(self) -> int:
        """Recover the lists a predecessor in this slot left, then record this process as owner."""
        previous = self.redis.hget(self.keys.slots, self.context.slot)
        threads = self.context.config.concurrency
        queues = set(self.context.queue_names)
        if previous:
            threads = max(threads, _threads(previous))
            queues.update(_queues(previous))
        count = sum(self.recover_list(key) for key in self.keys.private_lists(
            self.context.slot, threads, sorted(queues)))
        self.redis.hset(self.keys.slots, self.context.slot, self.slot_record())
        if count:
            logger.warning("recovered %d job(s) left by this slot's previous process", count)
        return count

    def release_slot(self) -> bool:
        """Forget this slot at a clean stop, unless a job is still in one of its lists."""
        lists = self.keys.private_lists(self.context.slot, self.context.config.concurrency,
                                        self.context.queue_names)
        pipe = self.redis.pipeline(transaction=False)
        for key in lists:
            pipe.llen(key)
        if any(pipe.execute()):
            return False
        for key in lists:  # a count a thread could not give back must not outlive the slot
            fairlimit.give_back_emptied(self.redis, self.keys, key)
        return bool(self._forget([self.keys.slots], [self.context.slot, self.slot_record()]))

    # --- the scan for slots whose owner stopped beating

    def scan_if_due(self) -> int:
        now = time.monotonic()
        if now < self.next_scan:
            return 0
        self.next_scan = now + self.scan_every
        lock_ttl = max(1, int(self.scan_every))
        if not self.redis.set(self.keys.recovery_lock, self.context.identity, nx=True,
                               ex=lock_ttl):
            return 0
        return self.scan()

    def scan(self) -> int:
        count = 0
        for slot, record in self.redis.hgetall(self.keys.slots).items():
            if slot == self.context.slot:
                continue
            owner = _owner(record)
            if owner and self.redis.exists(self.keys.process(owner)):
                continue
            moved = sum(self.recover_list(key) for key in self.keys.private_lists(
                slot, _threads(record), _queues(record)))
            self._forget([self.keys.slots], [slot, record])
            if moved:
                logger.warning("recovered %d job(s) from %s, whose heartbeat expired", moved, slot)
            count += moved
        return count

    # --- one list

    def recover_list(self, list_key: str) -> int:
        texts = read_list(self.redis, list_key)
        # Every job in the event loop's list had started; a thread's list is a batch.
        charged = len(texts) == 1 or list_key.endswith(ASYNC_SUFFIX)
        for text in reversed(texts):
            self._recover_job(list_key, text, charged)
        fairlimit.give_back_emptied(self.redis, self.keys, list_key)
        return len(texts)

    def _recover_job(self, list_key: str, text: bytes, charged: bool) -> None:
        queue = self.keys.home_queue(list_key) or queue_of(text)
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("jid", ""), str):
            self._move(move_one(self.keys, list_key, placement.Place(queue), text))
            return
        place = placement.place_of(payload, queue)
        if not charged:
            payload[ISOLATE_KEY] = True
            self._move(move_one(self.keys, list_key, place, text, dumps(payload)))
            self.context.observer.jobs_recovered(1)
            return
        times = self._charge(str(payload.get("jid")))
        if times > POISON_LIMIT:
            self._bury_poison(list_key, text, payload, times)
        else:
            self._move(move_one(self.keys, list_key, place, text))
            self.context.observer.jobs_recovered(1)

    def _charge(self, jid: str) -> int:
        now = time.time()
        key = self.keys.recovered(jid)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(key, {repr(now): now})
        pipe.zremrangebyscore(key, "-inf", now - POISON_WINDOW)
        pipe.expire(key, int(POISON_WINDOW))
        pipe.zcard(key)
        return pipe.execute()[-1]

    def _bury_poison(self, list_key: str, text: str, payload: dict, times: int) -> None:
        now = time.time()
        exc = PoisonJobError(f"its process died while running it {times} times within "
                             f"{POISON_WINDOW / 3600:.0f} hours; not retried again")
        dead = with_error(payload, exc, now)
        new_text = dumps(dead)
        if self._move_to_dead(list_key, text, new_text, payload, now):
            self.context.observer.job_poisoned()
            logger.error("poison job: class=%s jid=%s: dead: %s", payload.get("class"),
                         payload.get("jid"), exc)
            unique.release_at(self.redis, self.keys, payload, "dead")
            run_death_handlers(self.death_handlers, dead, exc)


    def _move_to_dead(self, list_key: str, text: str, new_text: str, payload: dict,
                      now: float) -> int:
        """Bury the poison job out of ``list_key``; a batch member's death is counted in the
        same script (``flow/batch_scripts.py``)."""
        dead_set = self.context.dead_set
        if "bid" not in payload:
            return dead_set.move_from_list(self.redis, list_key, [(text, new_text)], now)
        outcome = Outcome(Decision("dead"), new_text, now, bury=True)
        return batch_scripts.failed(self.redis, self.keys, payload, outcome,
                                    dead_set.trim_args(now), source=(list_key, text))


def requeue_slots(redis, keys, slots: list[str], threads: int) -> int:
    """Move every job in these slots' private lists to the front of its queue; forget the slots.

    The supervisor's sweep once its children are gone: the same atomic move as recovery, but
    uncharged, since these jobs belonged to children the master killed at its own deadline."""
    moved = 0
    for slot, record in zip(slots, redis.hmget(keys.slots, slots)):
        for list_key in keys.private_lists(slot, max(threads, _threads(record or "{}")),
                                           _queues(record or "{}")):
            queue = keys.home_queue(list_key)
            for text in reversed(read_list(redis, list_key)):
                place = placement.place_of_text(text, queue or queue_of(text))
                moved += MOVE_ONE(redis, *move_one(keys, list_key, place, text))
            fairlimit.give_back_emptied(redis, keys, list_key)
        redis.hdel(keys.slots, slot)
    return moved


def move_one(keys, list_key: str, place, text, new_text=None) -> tuple:
    """``MOVE_ONE``'s keys and arguments: ``text`` out of ``list_key``, ``new_text`` (default
    the same) to the front of its place (``flow/placement.py``)."""
    front_keys, marks = placement.front(keys, place)
    return [list_key, *front_keys], [text, text if new_text is None else new_text, *marks]


def read_list(redis, key: str) -> list[bytes]:
    """A private list's jobs as bytes: payloads need not be UTF-8."""
    return redis.execute_command("LRANGE", key, 0, -1, **{NEVER_DECODE: True})


def _owner(record: str) -> str | None:
    try:
        return json.loads(record).get("identity")
    except (ValueError, AttributeError):
        return None


def _queues(record: str) -> list[str]:
    """The queue names a slot record lists (records written before they did list none)."""
    try:
        queues = json.loads(record).get("queues") or []
    except (ValueError, AttributeError):
        return []
    return [name for name in queues if isinstance(name, str)]


def _threads(record: str) -> int:
    try:
        return int(json.loads(record).get("threads", 0))
    except (ValueError, AttributeError, TypeError):
        return 0
