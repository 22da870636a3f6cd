"""Over-limit jobs: put back in ``schedule`` for when their limiter can admit them.

Runs in the processor thread whose job raised ``limiter.OverLimit``. The job is not failed
and not retried: its payload goes to ``schedule`` at ``now + retry_in`` unchanged but for
``overrated``, the count of its over-limit reschedules (visible in the job's payload), and
the thread is free at once. The scheduled poller moves it back to its queue when due.

Acknowledgement: under reliable fetch one script removes the job from the thread's private
list and adds it to ``schedule``, so no crash can leave it in both or in neither; a reply lost
to a cut connection is retried, and the retry adds the same text again (a no-op) and removes
nothing more. Under basic fetch the job lives only in the process until the ``ZADD`` succeeds:
a process killed in between loses it, as basic fetch loses any job it runs.
"""

from __future__ import annotations

import functools
from typing import Any

from ..connection.scripts import Script
from ..payload import dumps, home_named

POSTPONE_SCRIPT = """
-- KEYS: the thread's private list, schedule. ARGV: job as fetched, job to schedule, run time,
-- reliable (1/0).
if ARGV[4] == '1' then redis.call('LREM', KEYS[1], 1, ARGV[1]) end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
"""
POSTPONE = Script(POSTPONE_SCRIPT)


def postponed(payload: dict[str, Any]) -> str:
    """The text to schedule: the payload with its reschedule count raised by one."""
    count = payload.get("overrated")
    return dumps({**payload, "overrated": (count if type(count) is int else 0) + 1})


class Postponer:
    """One per processor thread, on its connection."""

    def __init__(self, redis, keys) -> None:
        self.keys = keys
        self._script = functools.partial(POSTPONE, redis)

    def postpone(self, fetcher, fetched_text: str, payload: dict[str, Any], run_at: float) -> None:
        """Move the job from the thread's private list to ``schedule`` at ``run_at``."""
        # the job's queue's set: in the cluster layout, the slot of its private list
        self._script(keys=[fetcher.private_key,
                           self.keys.schedule_for(home_named(self.keys, payload))],
                     args=[fetched_text, postponed(payload), repr(run_at),
                           1 if fetcher.reliable else 0])
