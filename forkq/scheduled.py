"""The poller: moves due jobs from ``schedule`` and ``retry`` to their queues; runs recovery.

A thread of the worker child. Each wait is drawn uniformly from [0.5, 1.5] × ``poll_interval``
so that many processes started together do not poll together. One Lua call moves a batch of
due jobs: it removes each from the sorted set and pushes it to its queue in the same atomic
step, so a job is moved exactly once however many processes poll, and never lost between the
set and the list. ``enqueued_at`` is set to the time of the move by splicing the number into
the JSON text; re-encoding (Redis' cjson reorders keys and rounds big integers) happens only
when the text holds several ``"enqueued_at":`` keys and the top-level one cannot be told apart.
"""

from __future__ import annotations

import random
import threading
import time

import redis as redis_py

from .log import logger

#: jobs moved per Lua call; the poller repeats while calls come back full
MOVE_BATCH = 100

ENQUEUE_DUE_SCRIPT = r"""
-- KEYS: sorted set, queues set. ARGV: now, batch size, queue key prefix.
local function with_enqueued_at(text, job, now)
  local pattern = '"enqueued_at"%s*:%s*[-0-9.eE+]+'
  if job.enqueued_at == nil then
    local open = string.find(text, '{', 1, true)
    local rest = string.sub(text, open + 1)
    local sep = string.match(rest, '^%s*}') and '' or ','
    return string.sub(text, 1, open) .. '"enqueued_at":' .. now .. sep .. rest
  end
  local _, found = string.gsub(text, pattern, '')
  if found == 1 then
    return (string.gsub(text, pattern, '"enqueued_at":' .. now))
  end
  job.enqueued_at = tonumber(now)
  return cjson.encode(job)
end

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, text in ipairs(due) do
  if redis.call('ZREM', KEYS[1], text) == 1 then
    local ok, job = pcall(cjson.decode, text)
    local queue = 'default'
    if ok and type(job) == 'table' then
      if type(job.queue) == 'string' and job.queue ~= '' then queue = job.queue end
      text = with_enqueued_at(text, job, ARGV[1])
    end
    redis.call('SADD', KEYS[2], queue)
    redis.call('LPUSH', ARGV[3] .. queue, text)
  end
end
return #due
"""


def poll_wait(poll_interval: float, rand=random.random) -> float:
    """Seconds until the next poll: uniform in [0.5, 1.5] × the average."""
    return poll_interval * (0.5 + rand())


class Poller(threading.Thread):
    def __init__(self, context, recovery) -> None:
        super().__init__(name="poller", daemon=True)
        self.context = context
        self.recovery = recovery
        self.redis = context.make_redis()
        self._move = self.redis.register_script(ENQUEUE_DUE_SCRIPT)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(poll_wait(self.context.config.poll_interval)):
            try:
                self.enqueue_due()
                self.recovery.scan_if_due()
                self.context.health.succeeded()
            except redis_py.RedisError as exc:
                self.context.health.failed(exc)
            except Exception:
                logger.exception("poller error; it carries on at the next poll")

    def enqueue_due(self, now: float | None = None) -> int:
        """Move every due job of ``schedule`` and ``retry`` to its queue; returns the count."""
        keys = self.context.keys
        moved = 0
        for sorted_set in (keys.schedule, keys.retry):
            while True:
                stamp = repr(time.time() if now is None else now)
                count = self._move([sorted_set, keys.queues], [stamp, MOVE_BATCH, keys.queue("")])
                moved += count
                if count < MOVE_BATCH:
                    break
        return moved

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(5)
