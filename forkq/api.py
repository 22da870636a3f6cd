"""The read and admin side: queues, the schedule/retry/dead sets, processes, stats.

Used by the web UI, ``forkqctl`` and tests, in whatever process they run; the server side
never imports it. Everything goes through ``forkq.keys.Keys`` over one decode_responses client.

    api = Api.from_config(config)            # or Api(redis_client, Keys(namespace))
    api.queue("default").size
    api.retries.page(0, 25)
    api.dead.retry_all()
    Queue("default").size                    # module-level: the forkq client's own Redis

Entries keep the raw JSON text they were read as: it is the member to ZREM or LREM, so an admin
action removes exactly what was shown, or nothing when someone else moved it first. Callers name
an entry by its ``ident`` (the jid, or a digest of the text when the jid is missing or unusable),
plus its score in a sorted set or its index in a queue as a hint; the text is looked up again in
Redis, so no job's text has to travel through a form or a URL. A job that is not valid JSON is
still listed (as raw text) and can be deleted or killed.

An ``Api`` made ``read_only`` never writes: listing processes then leaves the members of
``processes`` whose heartbeat expired in place instead of pruning them.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import math
import re
import time
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterator

from redis.exceptions import NoPermissionError

from .config import Config
from .dead import DeadSet as DeadWriter
from .keys import SIGNALS_TTL, Keys

#: entries read or moved per round trip by the ``*_all`` actions and by ``filter``
BATCH = 1000
#: remote signals a running process understands (DESIGN.md §3, heartbeat)
SIGNALS = ("TSTP", "TERM", "TTIN")
#: a timestamp above this is integer milliseconds (Sidekiq 8), not seconds (year 5138)
_MS_THRESHOLD = 1e11
#: epoch seconds a date can show: 0001-01-01 to 9999-12-31 (Python's datetime range)
_EARLIEST, _LATEST = -62135596800.0, 253402300799.0
#: a jid longer than this is named by its digest (it has to fit in a URL)
_MAX_IDENT = 64
#: queue entries read per round trip when looking for one job, around its index hint first,
#: then through the whole list; few, since one job may be megabytes
_WINDOW = 100
#: ``<score>-<ident>``: the score as ``repr(float)`` (``-inf``, ``1e-05``), then the ident
_KEY = re.compile(r"(?P<score>[+-]?(?:inf|\d+(?:\.\d*)?(?:e[+-]?\d+)?))-(?P<ident>.+)\Z",
                  re.DOTALL)

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

# Moves members from a sorted set to their queues, each only if this call removed it, so two
# admins (or an admin and the poller) racing on one job push it once. The pushed text is
# prepared in Python, which keeps key order and large integers, unlike Lua's cjson.
# KEYS: the set, ``queues``, then each queue list; ARGV: (member, text, KEYS index, queue name)*
_MOVE_TO_QUEUE = """
local moved = 0
for i = 1, #ARGV, 4 do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('SADD', KEYS[2], ARGV[i + 3])
    redis.call('LPUSH', KEYS[tonumber(ARGV[i + 2])], ARGV[i + 1])
    moved = moved + 1
  end
end
return moved
"""



def latency(oldest: str | None, now: float) -> float:
    """Seconds the job text ``oldest`` (a queue's right end) has waited since it was enqueued."""
    enqueued_at = Entry(oldest).enqueued_at if oldest else None
    return max(0.0, now - enqueued_at) if enqueued_at else 0.0


def seconds(value: Any) -> float | None:
    """A timestamp as float epoch seconds, or None when it cannot be a date.

    Sidekiq 8 writes integer milliseconds. NaN, infinities, strings and values outside the
    years 1 to 9999 give None: the caller shows the raw value instead."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return as_date(value / 1000.0 if value > _MS_THRESHOLD else float(value))
    except OverflowError:  # an integer too large for a float
        return None


def as_date(moment: float | None) -> float | None:
    """Epoch seconds (a sorted-set score, say) that a date can show, else None."""
    if moment is None or not math.isfinite(moment):
        return None
    return moment if _EARLIEST <= moment <= _LATEST else None


def wire(text: str) -> str | bytes:
    """``text`` as sent to Redis: bytes when it holds surrogates (bytes that were not UTF-8,
    read back with ``surrogateescape``), since hiredis encodes text strictly."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
    return text


def decode_backtrace(value: Any) -> list[str]:
    """``error_backtrace``: base64 of zlib-compressed JSON lines; older writers kept a list."""
    if isinstance(value, list):
        return [str(line) for line in value]
    if not isinstance(value, str) or not value:
        return []
    try:
        lines = json.loads(zlib.decompress(base64.b64decode(value, validate=True)))
    except (binascii.Error, zlib.error, ValueError):
        return [f"(undecodable backtrace: {value[:200]})"]
    return [str(line) for line in lines] if isinstance(lines, list) else [str(lines)]


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis MATCH pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class Entry:
    """One job as stored: ``raw`` text, its ``score`` in a sorted set, and parsed fields."""

    def __init__(self, raw: str, score: float | None = None) -> None:
        self.raw = raw
        self.score = score
        try:
            item = json.loads(raw)
        except (ValueError, RecursionError):
            item = None
        self.item: dict[str, Any] | None = item if isinstance(item, dict) else None

    @property
    def malformed(self) -> bool:
        return self.item is None

    def _get(self, name: str, default: Any = None) -> Any:
        return self.item.get(name, default) if self.item else default

    def field(self, name: str) -> Any:
        """A field's value as stored (None when absent), e.g. a timestamp that is no date."""
        return self._get(name)

    @property
    def jid(self) -> str | None:
        jid = self._get("jid")
        return jid if isinstance(jid, str) else None

    @property
    def job_class(self) -> str:
        return str(self._get("class", ""))

    @property
    def display_class(self) -> str:
        """The class a person wrote: ActiveJob-style wrappers name it in ``wrapped``."""
        return str(self._get("wrapped") or self.job_class)

    @property
    def args(self) -> Any:
        return self._get("args", [])

    @property
    def queue(self) -> str | None:
        queue = self._get("queue")
        return queue if isinstance(queue, str) and queue else None

    @property
    def retry_count(self) -> int | None:
        return self._get("retry_count")

    @property
    def error_class(self) -> str | None:
        return _text(self._get("error_class"))

    @property
    def error_message(self) -> str | None:
        return _text(self._get("error_message"))

    @property
    def enqueued_at(self) -> float | None:
        return seconds(self._get("enqueued_at"))

    @property
    def created_at(self) -> float | None:
        return seconds(self._get("created_at"))

    @property
    def failed_at(self) -> float | None:
        return seconds(self._get("failed_at"))

    @property
    def retried_at(self) -> float | None:
        return seconds(self._get("retried_at"))

    @cached_property
    def backtrace(self) -> list[str]:
        return decode_backtrace(self._get("error_backtrace"))

    @cached_property
    def digest(self) -> str:
        return hashlib.sha1(self.raw.encode("utf-8", "surrogatepass")).hexdigest()[:24]

    @property
    def ident(self) -> str:
        """The jid, or the digest of the text when the jid is missing or too long for a URL."""
        jid = self.jid
        return jid if jid and len(jid) <= _MAX_IDENT else self.digest

    @property
    def key(self) -> str:
        """``<score>-<ident>`` naming this entry in its sorted set."""
        return f"{self.score!r}-{self.ident}"

    def matches(self, ident: str) -> bool:
        return ident in (self.ident, self.digest)

    def requeued_text(self, now: float, decrement: bool = False) -> str:
        """The text to push back to a queue: ``enqueued_at`` now, unknown keys kept."""
        item = dict(self.item or {})
        item["enqueued_at"] = now
        # As Sidekiq: a manual retry does not spend one of the job's automatic retries.
        if decrement and isinstance(item.get("retry_count"), int):
            item["retry_count"] -= 1
        return _dumps(item)

    def __repr__(self) -> str:
        return f"<Entry {self.display_class or '?'} jid={self.jid} score={self.score}>"


class Queue:
    """A ``queue:<name>`` list: producers push left, workers take from the right."""

    def __init__(self, name: str, api: "Api | None" = None) -> None:
        self.name = name
        self.api = api or default()
        self.key = wire(self.api.keys.queue(name))

    @property
    def size(self) -> int:
        return self.api.redis.llen(self.key)

    @property
    def latency(self) -> float:
        """Seconds the oldest job (right end) has waited since it was enqueued."""
        return latency(self.api.redis.lindex(self.key, -1), time.time())

    def jobs(self, start: int = 0, count: int = 25) -> list[Entry]:
        """Newest first, as pushed."""
        return [Entry(raw) for raw in self.api.redis.lrange(self.key, start, start + count - 1)]

    def find(self, ident: str, hint: int = 0) -> Entry | None:
        """The job named ``ident``: looked for around index ``hint`` first (jobs shift as
        workers take them), then through the whole list, one batch at a time."""
        found = self._find_in(ident, max(0, hint - _WINDOW // 2), _WINDOW)
        offset = 0
        while found is None and offset < self.size:
            found = self._find_in(ident, offset, _WINDOW)
            offset += _WINDOW
        return found

    def _find_in(self, ident: str, start: int, count: int) -> Entry | None:
        return next((e for e in self.jobs(start, count) if e.matches(ident)), None)

    def delete(self, entry: Entry) -> bool:
        return self.api.redis.lrem(self.key, 1, wire(entry.raw)) > 0

    def clear(self) -> None:
        pipe = self.api.redis.pipeline()
        pipe.unlink(self.key)
        pipe.srem(self.api.keys.queues, wire(self.name))
        pipe.execute()

    def __repr__(self) -> str:
        return f"<Queue {self.name}>"


class SortedSet:
    """``schedule``, ``retry`` or ``dead``: paged by index, searched by ZSCAN, moved by Lua."""

    #: newest (highest score) first when paging
    descending = False

    def __init__(self, key: str, api: "Api | None" = None) -> None:
        self.api = api or default()
        self.key = key

    @property
    def size(self) -> int:
        return self.api.redis.zcard(self.key)

    def page(self, offset: int = 0, count: int = 25) -> list[Entry]:
        pairs = self.api.redis.zrange(self.key, offset, offset + count - 1,
                                      desc=self.descending, withscores=True)
        return [Entry(raw, score) for raw, score in pairs]

    def filter(self, text: str, batch: int = BATCH) -> Iterator[Entry]:
        """Entries whose JSON contains ``text``, matched by Redis one batch at a time."""
        pattern = f"*{glob_escape(text)}*"
        for raw, score in self.api.redis.zscan_iter(self.key, match=pattern, count=batch):
            yield Entry(raw, score)

    def find(self, jid: str) -> Entry | None:
        return next((e for e in self.filter(jid) if e.jid == jid), None)

    def get(self, key: str) -> Entry | None:
        """The entry an ``Entry.key`` names, or None when it has gone."""
        parsed = _KEY.match(key)
        if parsed is None:
            return None
        score = parsed["score"]
        pairs = self.api.redis.zrange(self.key, score, score, byscore=True, withscores=True)
        return next((e for e in (Entry(r, s) for r, s in pairs)
                     if e.matches(parsed["ident"])), None)

    def delete(self, entry: Entry) -> bool:
        return self.api.redis.zrem(self.key, wire(entry.raw)) == 1

    def clear(self) -> int:
        """Drops every entry at once; Redis frees the memory in the background."""
        pipe = self.api.redis.pipeline()
        pipe.zcard(self.key)
        pipe.unlink(self.key)
        return pipe.execute()[0]

    delete_all = clear

    def _requeue(self, entries: list[Entry], decrement: bool) -> tuple[int, int]:
        """Moves entries to their queues in one script call; returns (moved, left in place).

        Malformed entries stay: there is no queue to send them to.
        """
        movable = [e for e in entries if not e.malformed]
        if not movable:
            return 0, len(entries)
        keys, now = [self.key, self.api.keys.queues], time.time()
        position: dict[str, int] = {}  # queue name -> 1-based index of its list in KEYS
        args: list[Any] = []
        for entry in movable:
            queue = entry.queue or "default"
            if queue not in position:
                keys.append(wire(self.api.keys.queue(queue)))
                position[queue] = len(keys)
            args += [wire(entry.raw), wire(entry.requeued_text(now, decrement)),
                     position[queue], wire(queue)]
        return self.api.move_to_queue(keys=keys, args=args), len(entries) - len(movable)

    def _kill(self, entries: list[Entry]) -> tuple[int, int]:
        moved = self.api.dead_writer.move_from_zset(self.api.redis, self.key,
                                                    [(wire(e.raw),) * 2 for e in entries])
        return moved, 0

    def _each_batch(self, action: Callable[[list[Entry]], tuple[int, int]],
                    batch: int = BATCH) -> int:
        """Applies ``action`` to the entries present at the start, ``batch`` at a time.

        Moved entries leave the set, so the next batch starts at the entries left in place.
        Stopping after the starting size keeps a steady inflow from making this endless.
        """
        done = kept = 0
        remaining = self.size
        while remaining > 0:
            pairs = self.api.redis.zrange(self.key, kept, kept + min(batch, remaining) - 1,
                                          withscores=True)
            if not pairs:
                break
            moved, left = action([Entry(raw, score) for raw, score in pairs])
            done, kept, remaining = done + moved, kept + left, remaining - len(pairs)
        return done

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} size={self.size}>"


class ScheduledSet(SortedSet):
    """Score = run-at; soonest first."""

    def __init__(self, api: "Api | None" = None) -> None:
        api = api or default()
        super().__init__(api.keys.schedule, api)

    def add_to_queue(self, entry: Entry) -> bool:
        return self._requeue([entry], decrement=False)[0] == 1

    def add_all_to_queue(self, batch: int = BATCH) -> int:
        return self._each_batch(lambda entries: self._requeue(entries, False), batch)


class RetrySet(SortedSet):
    """Score = next retry; soonest first."""

    def __init__(self, api: "Api | None" = None) -> None:
        api = api or default()
        super().__init__(api.keys.retry, api)

    def retry_now(self, entry: Entry) -> bool:
        return self._requeue([entry], decrement=True)[0] == 1

    def retry_all(self, batch: int = BATCH) -> int:
        return self._each_batch(lambda entries: self._requeue(entries, True), batch)

    def kill(self, entry: Entry) -> bool:
        return self._kill([entry])[0] == 1

    def kill_all(self, batch: int = BATCH) -> int:
        return self._each_batch(self._kill, batch)


class DeadSet(SortedSet):
    """Score = time of death; newest first. Trimmed by ``dead_max_jobs`` and ``dead_timeout``."""

    descending = True

    def __init__(self, api: "Api | None" = None) -> None:
        api = api or default()
        super().__init__(api.keys.dead, api)

    def retry_now(self, entry: Entry) -> bool:
        return self._requeue([entry], decrement=True)[0] == 1

    def retry_all(self, batch: int = BATCH) -> int:
        return self._each_batch(lambda entries: self._requeue(entries, True), batch)


@dataclass
class Process:
    """One worker process as its heartbeat describes it."""

    identity: str
    info: dict[str, Any]
    busy: int = 0
    beat: float | None = None
    #: ``beat`` as stored, shown when it is no date
    raw_beat: str | None = None
    quiet: bool = False
    rss_kb: int = 0
    rtt_us: int = 0
    #: the hash's top-level ``concurrency`` field as stored (None when absent)
    raw_concurrency: str | None = None

    @property
    def hostname(self) -> str:
        return str(self.info.get("hostname") or self.identity.split(":")[0])

    @property
    def pid(self) -> Any:
        return self.info.get("pid")

    @property
    def tag(self) -> str:
        return str(self.info.get("tag") or "")

    @property
    def labels(self) -> list[str]:
        return _strings(self.info.get("labels"))

    @property
    def started_at(self) -> float | None:
        return seconds(self.info.get("started_at"))

    @property
    def concurrency(self) -> int:
        """Threads: the top-level field (Sidekiq 8.1.2+ writes it only there), else ``info``'s
        (forkq, Sidekiq up to 8.1.1), else the sum of ``info.capsules``."""
        if self.raw_concurrency is not None:
            return _int(self.raw_concurrency)
        if "concurrency" in self.info:
            return _int(self.info.get("concurrency"))
        return sum(_int(c.get("concurrency")) for c in self._capsules().values())

    @property
    def queues(self) -> list[str]:
        """``info.queues``, else the queues named in the capsules' ``weights`` (as Sidekiq 8.1
        reads them)."""
        if "queues" in self.info or not self._capsules():
            return _strings(self.info.get("queues"))
        names = [str(q) for c in self._capsules().values()
                 if isinstance(c.get("weights"), dict) for q in c["weights"]]
        return list(dict.fromkeys(names))

    def _capsules(self) -> dict[str, dict]:
        """``info.capsules`` (Sidekiq 8.0.9+: name → concurrency, mode, weights), the
        entries that are objects."""
        capsules = self.info.get("capsules")
        if not isinstance(capsules, dict):
            return {}
        return {str(name): c for name, c in capsules.items() if isinstance(c, dict)}

    @property
    def version(self) -> str:
        return str(self.info.get("version") or "")


@dataclass
class Work:
    """A job running on one thread of a process."""

    identity: str
    thread: str
    queue: str
    run_at: float | None
    job: Entry = field(repr=False)
    #: ``run_at`` as stored, shown when it is no date
    raw_run_at: Any = None


@dataclass
class DayStat:
    day: str
    processed: int
    failed: int


class Api:
    """The admin view of one Redis: queues, sets, processes, stats."""

    def __init__(self, redis, keys: Keys | None = None, *, dead_max_jobs: int = 10_000,
                 dead_timeout: float = Config.dead_timeout, read_only: bool = False) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.read_only = read_only
        self.dead_writer = DeadWriter(self.keys, dead_max_jobs, dead_timeout)
        self.move_to_queue = redis.register_script(_MOVE_TO_QUEUE)

    @classmethod
    def from_config(cls, config: Config, redis=None, read_only: bool = False) -> "Api":
        if redis is None:
            from . import connection

            # Text that is not UTF-8 (a buggy producer's job, a queue name) round-trips as
            # surrogates, so it can be shown, found again and deleted.
            redis = connection.make_client(connection.resolve_url(config.redis_url,
                                                                  config.data_dir),
                                           encoding_errors="surrogateescape")
        return cls(redis, Keys(config.namespace), dead_max_jobs=config.dead_max_jobs,
                   dead_timeout=config.dead_timeout, read_only=read_only)

    def queue(self, name: str) -> Queue:
        return Queue(name, self)

    def all_queues(self) -> list[Queue]:
        return [Queue(name, self) for name in sorted(self.redis.smembers(self.keys.queues))]

    @property
    def scheduled(self) -> ScheduledSet:
        return ScheduledSet(self)

    @property
    def retries(self) -> RetrySet:
        return RetrySet(self)

    @property
    def dead(self) -> DeadSet:
        return DeadSet(self)

    def processes(self) -> list[Process]:
        """Live processes by identity; members whose heartbeat hash expired are pruned
        (left in place when read-only)."""
        identities = sorted(self.redis.smembers(self.keys.processes))
        pipe = self.redis.pipeline(transaction=False)
        for identity in identities:
            pipe.hmget(self.keys.process(identity), "info", "busy", "beat", "quiet", "rss",
                       "rtt_us", "concurrency")
        live, gone = [], []
        for identity, fields in zip(identities, pipe.execute()):
            if fields[0] is None:
                gone.append(identity)
            else:
                live.append(_process(identity, fields))
        if gone and not self.read_only:
            self.redis.srem(self.keys.processes, *gone)
        return live

    def workers(self) -> list[Work]:
        """Running jobs of live processes, longest running first."""
        processes = self.processes()
        pipe = self.redis.pipeline(transaction=False)
        for process in processes:
            pipe.hgetall(self.keys.work(process.identity))
        works = [_work(p.identity, thread, text)
                 for p, threads in zip(processes, pipe.execute())
                 for thread, text in threads.items()]
        return sorted(works, key=lambda w: w.run_at or 0.0)

    def signal(self, identity: str, signal: str) -> None:
        """Asks a process to quiet (TSTP), stop (TERM) or dump its threads (TTIN)."""
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(SIGNALS)}, not {signal!r}")
        pipe = self.redis.pipeline()
        pipe.lpush(self.keys.signals(identity), signal)
        pipe.expire(self.keys.signals(identity), SIGNALS_TTL)
        pipe.execute()

    def stats(self) -> dict[str, int]:
        keys = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.stat("processed"))
        pipe.get(keys.stat("failed"))
        pipe.zcard(keys.schedule)
        pipe.zcard(keys.retry)
        pipe.zcard(keys.dead)
        pipe.smembers(keys.queues)
        processed, failed, scheduled, retries, dead, queues = pipe.execute()
        for name in queues:
            pipe.llen(wire(keys.queue(name)))
        enqueued = sum(pipe.execute()) if queues else 0
        processes = self.processes()
        return {"processed": _int(processed), "failed": _int(failed),
                "busy": sum(p.busy for p in processes), "enqueued": enqueued,
                "scheduled": scheduled, "retries": retries, "dead": dead,
                "processes": len(processes)}

    def history(self, days: int = 7, today: datetime.date | None = None) -> list[DayStat]:
        """Processed and failed per UTC day, oldest first, ending today."""
        today = today or datetime.datetime.now(datetime.timezone.utc).date()
        names = [(today - datetime.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
        processed = self.redis.mget([self.keys.daily_stat("processed", d) for d in names])
        failed = self.redis.mget([self.keys.daily_stat("failed", d) for d in names])
        return [DayStat(d, _int(p), _int(f)) for d, p, f in zip(names, processed, failed)]

    def redis_info(self) -> dict[str, Any]:
        """Server facts from INFO; "?" where a Redis user may not run INFO (not a read)."""
        try:
            info = self.redis.info()
        except NoPermissionError:
            info = {}
        return {"version": info.get("redis_version", "?"),
                "used_memory": info.get("used_memory_human", "?"),
                "peak_memory": info.get("used_memory_peak_human", "?"),
                "connected_clients": info.get("connected_clients", 0),
                "uptime_days": info.get("uptime_in_days", 0),
                "maxmemory_policy": info.get("maxmemory_policy", "?")}


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (ValueError, TypeError, OverflowError):
        return 0


def _text(value: Any) -> str | None:
    """A field meant to be text, as text whatever a foreign writer stored (None if absent)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _strings(value: Any) -> list[str]:
    """A list of names from a heartbeat's info, whatever a foreign writer put there."""
    if not value:
        return []
    return [str(each) for each in value] if isinstance(value, list) else [str(value)]


def _process(identity: str, fields: list[str | None]) -> Process:
    info_text, busy, beat, quiet, rss, rtt_us, concurrency = fields
    try:
        info = json.loads(info_text)
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    try:
        beat_at = as_date(float(beat)) if beat else None
    except ValueError:
        beat_at = None
    return Process(identity, info, busy=_int(busy), beat=beat_at, raw_beat=beat,
                   quiet=quiet == "true", rss_kb=_int(rss), rtt_us=_int(rtt_us),
                   raw_concurrency=concurrency)


def _work(identity: str, thread: str, text: str) -> Work:
    try:
        work = json.loads(text)
    except ValueError:
        work = None
    if not isinstance(work, dict):
        return Work(identity, thread, "", None, Entry(text))
    payload = work.get("payload")
    # Sidekiq 6.2 to 8.1 store the payload as a JSON string, 6.0-6.1 as an object.
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return Work(identity, thread, str(work.get("queue") or ""), seconds(work.get("run_at")),
                Entry(raw), work.get("run_at"))


def default() -> Api:
    """An Api over the forkq client's Redis and namespace (``forkq.configure``)."""
    from . import client

    return Api(client.default().redis, client.default().keys)
