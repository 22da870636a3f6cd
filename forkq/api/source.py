"""``Store``: the Redis the read side works on, its keys, and the writes its entries share.

The base of ``admin.Api``, and what ``Queue`` and the sorted sets read through when none is
given: ``default_store()``, over the process's Redis and namespace (``forkq.configure``).
Runs in whatever process reads (web UI, ``forkqctl``, tests), never on the server side.
"""

from __future__ import annotations

import functools

from .. import connection
from ..config import Config
from ..connection.source import default_source
from ..connection.scripts import Script
from ..flow.placement import PUSH_LUA
from ..dead import DeadWriter
from ..keys import Keys, keys_for

# Moves members from a sorted set to their queues, each only if this call removed it, so two
# admins (or an admin and the poller) racing on one job push it once. The pushed text is
# prepared in Python, which keeps key order and large integers, unlike Lua's cjson.
# KEYS: the set, ``queues``, then each queue list; ARGV: (member, text, KEYS index, queue name)*
MOVE_TO_QUEUE = PUSH_LUA + """
-- KEYS: sorted set, queues set, queue lists. ARGV: Keys.root, then per entry: member, text to
-- push, index of its queue's list in KEYS, queue name, priority level, tenant ('' none:
-- flow/placement.py).
local moved = 0
for i = 2, #ARGV, 6 do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('SADD', KEYS[2], ARGV[i + 3])
    if ARGV[i + 4] == '0' and ARGV[i + 5] == '' then
      redis.call('LPUSH', KEYS[tonumber(ARGV[i + 2])], ARGV[i + 1])
    else
      push_placed(ARGV[1], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 1])
    end
    moved = moved + 1
  end
end
return moved
"""
_MOVE_TO_QUEUE = Script(MOVE_TO_QUEUE)


class Store:
    """One Redis and its keys, with the two writes the sorted sets share (``move_to_queue``,
    the dead set's ``dead_writer``); a ``read_only`` store never writes."""

    def __init__(self, redis, keys: Keys | None = None, *,
                 dead_max_jobs: int = Config.dead_max_jobs,
                 dead_timeout: float = Config.dead_timeout, read_only: bool = False) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.read_only = read_only
        self.dead_writer = DeadWriter(self.keys, dead_max_jobs, dead_timeout)
        self.move_to_queue = functools.partial(_MOVE_TO_QUEUE, redis)

    @classmethod
    def from_config(cls, config: Config, redis=None, read_only: bool = False):
        if redis is None:
            # Text that is not UTF-8 (a buggy producer's job, a queue name) round-trips as
            # surrogates, so it can be shown, found again and deleted.
            redis = connection.make_client(connection.resolve_url(config.redis_url,
                                                                  config.data_dir),
                                           encoding_errors="surrogateescape")
        return cls(redis, keys_for(config.layout, config.namespace), dead_max_jobs=config.dead_max_jobs,
                   dead_timeout=config.dead_timeout, read_only=read_only)


def default_store() -> Store:
    """A store over the process's Redis and namespace."""
    source = default_source()
    return Store(source.redis, source.keys)
