"""The admin's moves of sorted-set entries to their queues in the cluster layout (``layout:
cluster``): "add to queue" and "retry now", one entry or all.

Runs in whatever process acts (web UI, ``forkqctl``, tests). A queue's ``schedule`` and
``retry`` share its hash slot (``keys.ClusterKeys``), so a move from them is one script call
in that slot (``MOVE_IN_SLOT``: the poller's single-slot move, with the text to push prepared
in Python, since a manual retry gives back one retry count). The dead set is in the meta slot,
so a retry from it crosses slots and is two idempotent steps, ``DeadWriter._bury_in_two_steps``
the other way round: push to the queue first, then remove from ``dead``; when ``dead`` no
longer held the member (another admin moved it first), the pushed copy is taken back out of
the queue. Nothing is lost: a crash between the steps leaves the job in both places, and a
worker that took the copy before it was taken back runs the job twice. The queue's name goes
into the directory of queues (``SADD``, another slot) before its jobs do.
"""

from __future__ import annotations

from ..connection.scripts import Script

# KEYS: a queue's sorted set, the queue's list. ARGV: (member, text to push)*. Each member is
# pushed only if this call removed it, so two admins (or an admin and the poller) racing on
# one job push it once.
MOVE_IN_SLOT = Script("""
local moved = 0
for i = 1, #ARGV, 2 do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[2], ARGV[i + 1])
    moved = moved + 1
  end
end
return moved
""")


def requeue(store, source: str, moves: list[tuple[str, str, str]], same_slot: bool) -> int:
    """Moves (queue, member, text) from the sorted set ``source`` to their queues; returns
    how many it moved. ``same_slot``: ``source`` is the one queue's own set (every move names
    that queue), else the moves cross slots."""
    redis, keys = store.redis, store.keys
    redis.sadd(keys.queues, *dict.fromkeys(queue for queue, _, _ in moves))
    if same_slot:
        args = [value for _, member, text in moves for value in (member, text)]
        return int(MOVE_IN_SLOT(redis, [source, keys.queue(moves[0][0])], args))
    pipe = redis.pipeline(transaction=False)
    for queue, _, text in moves:
        pipe.lpush(keys.queue(queue), text)
    pipe.execute()
    for _, member, _ in moves:
        pipe.zrem(source, member)
    removed = pipe.execute()
    gone = [(queue, text) for (queue, _, text), done in zip(moves, removed) if not done]
    for queue, text in gone:
        pipe.lrem(keys.queue(queue), 1, text)
    if gone:
        pipe.execute()
    return len(moves) - len(gone)
