"""Worker processes as their heartbeats describe them, and the jobs running on their threads.

What ``worker/heartbeat.py`` (or Sidekiq) wrote: the ``<identity>`` hash and its
``<identity>:work`` hash. ``read_processes`` is the one reader of heartbeats, for ``admin.Api``
and the metrics exporter alike: a member of ``processes`` whose record is bad (``info`` not a
JSON object, a counter that is no count, a key that is not a hash at all) is still listed, with
the reason in ``Process.problem``, and never stops the read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .entry import Entry, as_date, as_int, seconds
from .records import count, json_object, wrong_type

#: the fields of an ``<identity>`` hash read for a ``Process``, in ``parse_process``'s order
PROCESS_FIELDS = ("info", "busy", "beat", "quiet", "rss", "rtt_us", "concurrency", "coroutines")

@dataclass
class Process:
    """One worker process as its heartbeat describes it."""

    identity: str
    info: dict[str, Any]
    #: jobs running, thread and coroutine jobs alike (what Sidekiq counts and shows)
    busy: int = 0
    #: coroutine jobs among ``busy`` (forkq's ``coroutines`` field); None in a record without
    #: it (Sidekiq's, an older forkq's), whose ``busy`` all counts against the threads
    coroutines: int | None = None
    beat: float | None = None
    #: ``beat`` as stored, shown when it is no date
    raw_beat: str | None = None
    quiet: bool = False
    rss_kb: int = 0
    rtt_us: int = 0
    #: the hash's top-level ``concurrency`` field as stored (None when absent)
    raw_concurrency: str | None = None
    #: why this record is bad (shown instead of trusted), None when it is sound
    problem: str | None = None

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
            return as_int(self.raw_concurrency)
        if "concurrency" in self.info:
            return as_int(self.info.get("concurrency"))
        return sum(as_int(c.get("concurrency")) for c in self._capsules().values())

    @property
    def threads_busy(self) -> int:
        """Jobs running on the threads: ``busy`` less the coroutine jobs."""
        return self.busy - (self.coroutines or 0)

    @property
    def async_concurrency(self) -> int:
        """Coroutine jobs the process runs at once at most (``info``'s; 0 when absent)."""
        return as_int(self.info.get("async_concurrency"))

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
    #: a resumable job's last saved cursor (``flow/iterable.py``), else None
    cursor: Any = None


def _strings(value: Any) -> list[str]:
    """A list of names from a heartbeat's info, whatever a foreign writer put there."""
    if not value:
        return []
    return [str(each) for each in value] if isinstance(value, list) else [str(value)]


def read_processes(redis, keys, identities: list[str]) -> list[Process | None]:
    """Each identity's heartbeat, in order, in one round trip: None where the hash is gone
    (expired), a ``Process`` with a ``problem`` where the record is bad."""
    pipe = redis.pipeline(transaction=False)
    for identity in identities:
        pipe.hmget(keys.process(identity), *PROCESS_FIELDS)
    return [_process(identity, fields)
            for identity, fields in zip(identities, pipe.execute(raise_on_error=False))]


def _process(identity: str, fields) -> Process | None:
    if wrong_type(fields):
        # A producer's SADD of another key's name: the key is the producer's, left alone.
        return Process(identity, {}, problem=f"its key is not a heartbeat hash ({fields})")
    return None if fields[0] is None else parse_process(identity, fields)


def parse_process(identity: str, fields: list[str | None]) -> Process:
    """A process from the values of its hash's ``PROCESS_FIELDS``, whatever a writer stored;
    what cannot be read counts 0 and is named in ``problem``."""
    info_text, busy, beat, quiet, rss, rtt_us, concurrency, coroutines = fields
    info, problem = json_object(info_text, "info")
    problems = [problem] if problem else []
    counts = {}
    for name, text in (("busy", busy), ("rss", rss), ("rtt_us", rtt_us),
                       ("concurrency", concurrency), ("coroutines", coroutines)):
        counts[name], problem = count(text, name)
        problems += [problem] if problem else []
    if counts["coroutines"] > counts["busy"]:
        problems.append(f"coroutines ({counts['coroutines']}) is more than busy "
                        f"({counts['busy']})")
        counts["coroutines"] = 0
    try:
        beat_at = as_date(float(beat)) if beat else None
    except ValueError:
        beat_at = None
    return Process(identity, info, busy=counts["busy"],
                   coroutines=None if coroutines is None else counts["coroutines"],
                   beat=beat_at, raw_beat=beat,
                   quiet=quiet == "true", rss_kb=counts["rss"], rtt_us=counts["rtt_us"],
                   raw_concurrency=None if concurrency is None else str(counts["concurrency"]),
                   problem="; ".join(problems) or None)


def parse_work(identity: str, thread: str, text: str) -> Work:
    """The job a thread runs, from its field of ``<identity>:work``; text that is not the
    expected object shows as a job of unknown queue and time."""
    work, problem = json_object(text, "work")
    if problem:
        return Work(identity, thread, "", None, Entry(text))
    payload = work.get("payload")
    # Sidekiq 6.2 to 8.1 store the payload as a JSON string, 6.0-6.1 as an object.
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return Work(identity, thread, str(work.get("queue") or ""), seconds(work.get("run_at")),
                Entry(raw), work.get("run_at"))
