"""Worker processes as their heartbeats describe them, and the jobs running on their threads.

Pure parsing of what ``worker/heartbeat.py`` (or Sidekiq) wrote: the ``<identity>`` hash and its
``<identity>:work`` hash; ``admin.Api`` reads them from Redis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .entry import Entry, as_date, as_int, seconds

#: the fields of an ``<identity>`` hash read for a ``Process``, in ``parse_process``'s order
PROCESS_FIELDS = ("info", "busy", "beat", "quiet", "rss", "rtt_us", "concurrency")

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
            return as_int(self.raw_concurrency)
        if "concurrency" in self.info:
            return as_int(self.info.get("concurrency"))
        return sum(as_int(c.get("concurrency")) for c in self._capsules().values())

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


def parse_process(identity: str, fields: list[str | None]) -> Process:
    """A process from the values of its hash's ``PROCESS_FIELDS``, whatever a writer stored."""
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
    return Process(identity, info, busy=as_int(busy), beat=beat_at, raw_beat=beat,
                   quiet=quiet == "true", rss_kb=as_int(rss), rtt_us=as_int(rtt_us),
                   raw_concurrency=concurrency)


def parse_work(identity: str, thread: str, text: str) -> Work:
    """The job a thread runs, from its field of ``<identity>:work``; text that is not the
    expected object shows as a job of unknown queue and time."""
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
