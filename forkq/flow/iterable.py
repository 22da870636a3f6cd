"""Resumable jobs (Sidekiq 7.3's IterableJob): a long job that walks items and saves a cursor
in Redis, so that it resumes where it stopped after a shutdown, a kill -9 or a failure.

```
class Export(forkq.IterableJob):
    def build_enumerator(self, account_id, *, cursor):
        start = cursor or 0
        return ((row, row.id) for row in rows_after(account_id, start))   # (item, cursor) pairs
    def each_iteration(self, row, account_id):
        write(row)
```

Runs in a processor thread, as the job's ``perform``. Steps: read the saved cursor (None on
the first run), build the enumerator from it, then for each ``(item, cursor)`` pair run
``each_iteration`` and save the pair's cursor, after every ``cursor_every`` items or
``cursor_seconds`` seconds, whichever comes first (default: after each item). Before each item
the job checks ``self.stopping`` (the worker is shutting down): it then saves the cursor and
raises ``Interrupted``, which the processor handles as a limiter's reschedule (``postpone.py``):
the job leaves the thread's private list and is rescheduled for now, in one script, so the
poller puts it back in its queue; it is not failed, not retried and counts nowhere (batches).
It checks ``self.cancelled()`` there too: a job cancelled while it runs (``forkq.cancel``)
saves its cursor and raises ``Cancelled`` between items, ending as cancelled.

When the enumerator is exhausted the cursor is replaced by a ``done`` mark (kept
``cursor_ttl``): a run after that (the job recovered after a kill -9 that came between the last
item and the acknowledgement) does nothing. The cursor lives under ``forkq:iteration:<jid>``,
renewed to ``cursor_ttl`` at each save; a retry keeps the jid, so it resumes from the cursor.

What runs twice: after kill -9, the items since the last save (at most ``cursor_every`` items
or ``cursor_seconds`` seconds of them). After a failure, the item that raised, and the items
since the last save. After a shutdown, none.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable

from ..errors import Cancelled
from ..job import Job
from ..limiter import OverLimit
from ..payload import dumps


class Interrupted(OverLimit):
    """The worker is stopping: the job goes back to its queue and resumes from its cursor.
    A ``BaseException``, like ``OverLimit``, so a job's ``except Exception`` does not swallow
    it."""

    def __init__(self, jid: str) -> None:
        super().__init__("iteration", 0.0)
        #: the reschedule's log line (``Flow.postpone``)
        self.note = ("stopped between items: the worker is stopping; back to its queue, to "
                     "resume from its saved cursor")


class IterableJob(Job):
    """Base class of a resumable job: define ``build_enumerator`` and ``each_iteration``."""

    #: save the cursor after this many items (1: after each)
    cursor_every: int = 1
    #: or after this many seconds since the last save, whichever comes first (None: no limit)
    cursor_seconds: float | None = None
    #: seconds the cursor (and the done mark) lives after its last save
    cursor_ttl: float = 30 * 86400

    def build_enumerator(self, *args: Any, cursor: Any) -> Iterable[tuple[Any, Any]]:
        raise NotImplementedError(f"{type(self).__qualname__} must define build_enumerator()")

    def each_iteration(self, item: Any, *args: Any) -> None:
        raise NotImplementedError(f"{type(self).__qualname__} must define each_iteration()")

    def perform(self, *args: Any) -> None:
        saved = self._load()
        if saved.get("done"):
            return
        cursor, unsaved, last_save = saved.get("cursor"), 0, time.monotonic()
        for item, next_cursor in self.build_enumerator(*args, cursor=cursor):
            if self.stopping or self.cancelled():
                self._save(cursor) if unsaved else None
                raise (Cancelled(f"cancelled between items (jid={self.jid})")
                       if self.cancelled() else Interrupted(self.jid))
            self.each_iteration(item, *args)
            cursor, unsaved = next_cursor, unsaved + 1
            if unsaved >= self.cursor_every or (
                    self.cursor_seconds is not None
                    and time.monotonic() - last_save >= self.cursor_seconds):
                self._save(cursor)
                unsaved, last_save = 0, time.monotonic()
        self._write({"done": True})

    @property
    def cursor_key(self) -> str:
        from ..client import default

        return default().keys.iteration(self.jid)

    def _load(self) -> dict[str, Any]:
        import forkq

        text = forkq.redis().get(self.cursor_key)
        return json.loads(text) if text else {}

    def _save(self, cursor: Any) -> None:
        self._write({"cursor": cursor, "at": time.time()})

    def _write(self, record: dict[str, Any]) -> None:
        import forkq

        try:
            text = dumps(record)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{type(self).__qualname__}: the cursor {record.get('cursor')!r} "
                            f"is not JSON ({exc}); yield JSON-native cursors (str, int, list, "
                            f"dict...)") from None
        forkq.redis().set(self.cursor_key, text, ex=max(1, int(self.cursor_ttl)))
