"""One job as the read side finds it: ``Entry``, and the readers of the values it stores.

Pure: no Redis here. An entry keeps the raw JSON text it was read as, since that text is the
member an admin action removes (``ZREM``, ``LREM``); its fields are parsed leniently, since a
foreign or buggy writer may have stored anything (a job that is not JSON is still listed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import zlib
from functools import cached_property
from typing import Any

from ..payload import dumps, epoch_seconds
from .records import MAX_COUNT

#: epoch seconds a date can show: 0001-01-01 to 9999-12-31 (Python's datetime range)
_EARLIEST, _LATEST = -62135596800.0, 253402300799.0
#: characters; a jid longer than this is named by its digest (it has to fit in a URL)
_MAX_IDENT = 64


def seconds(value: Any) -> float | None:
    """A timestamp as float epoch seconds, or None when it cannot be a date.

    Sidekiq 8 writes integer milliseconds (``payload.epoch_seconds``). NaN, infinities,
    strings and values outside the years 1 to 9999 give None: the caller shows the raw value
    instead."""
    return as_date(epoch_seconds(value))


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


def as_int(value: Any) -> int:
    """A counter as stored (text, None, anything a foreign writer left), 0 when it is none or
    outside a 64-bit integer (which no Redis counter holds, and no float division survives)."""
    try:
        number = int(value or 0)
    except (ValueError, TypeError, OverflowError):
        return 0
    return number if -MAX_COUNT - 1 <= number <= MAX_COUNT else 0


def _text(value: Any) -> str | None:
    """A field meant to be text, as text whatever a foreign writer stored (None if absent)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class Entry:
    """One job as stored: ``raw`` text, its ``score`` in a sorted set, and parsed fields;
    ``source``, the sorted set it was read from where several are read as one (the cluster
    layout's ``schedule`` and ``retry``, a set per queue: ``api/queuesets.py``)."""

    def __init__(self, raw: str, score: float | None = None, source: str | None = None) -> None:
        self.raw = raw
        self.score = score
        self.source = source
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
        return dumps(item)

    def __repr__(self) -> str:
        return f"<Entry {self.display_class or '?'} jid={self.jid} score={self.score}>"
