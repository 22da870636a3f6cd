"""What pause and cancel support costs the fetch path: today's fetch script against the one
before it (kept below as ``BEFORE``), side by side in one run, as ratios.

Not a test: it prints figures. On a private redis-server on loopback TCP, each case calls
both scripts in alternating blocks (so that the machine's changing speed hits both alike) on
the same keys: three queues, 10-job batches or 1-job ones, the jobs refilled between blocks
outside the timing. Per call it reports the time Redis spent running the script (``INFO
commandstats``' ``usec`` of ``evalsha``: the server's own measure of the command, without the
socket work both variants share; what bounds a fleet on one Redis) and the caller's wall time
(round trip included); the median of the blocks, and the ratio today / before.

Cases, with the check flag a worker sends in each: nothing paused and no cancel marks (the
process knows of none: the script does not look at either set); one of the three queues
paused (an ``EXISTS`` of both sets, a ``SISMEMBER`` per queue looked at); 100 cancel marks
kept (an ``EXISTS``, and a jid match and a ``ZSCORE`` per job).

    python bench/fetch_pause.py                 # 2,000 calls a block, 7 blocks a side
    python bench/fetch_pause.py --calls 500 --blocks 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

from forkq.connection.scripts import Script  # noqa: E402
from forkq.keys import DAILY_STAT_TTL, STATS_LUA, Keys  # noqa: E402
from forkq.worker.fetch import FETCH  # noqa: E402

from harness import Server  # noqa: E402

#: the fetch script as it was before pause and cancel support: the baseline
BEFORE = Script(STATS_LUA + """
local reliable = ARGV[5] == '1'
if reliable then redis.call('DEL', KEYS[1]) end
count_stats(3, ARGV[2], ARGV[3], ARGV[4])
local want = tonumber(ARGV[1])
local out = {}
for i = 7, #KEYS do
  local jobs = redis.call('RPOP', KEYS[i], want)
  if jobs then
    if reliable then redis.call('RPUSH', KEYS[2], unpack(jobs)) end
    for _, job in ipairs(jobs) do
      out[#out + 1] = i - 7
      out[#out + 1] = job
    end
    want = want - #jobs
    if want <= 0 then break end
  end
end
return out
""")

QUEUES = ("critical", "default", "low")
KEYS = Keys()
LISTS = [KEYS.inflight("bench", 0), KEYS.inflight("bench", 0, 1)]


def job(n: int) -> str:
    return json.dumps({"class": "app.Job", "args": [n, "x" * 40], "jid": f"{n:024x}",
                       "queue": "default", "retry": True, "created_at": 1.0,
                       "enqueued_at": 1.0})


def call(redis, today: bool, batch: int, side: int, check: int) -> list:
    stats = KEYS.stat_keys("2026-01-01")
    queues = [KEYS.queue(name) for name in QUEUES]
    ack, fill = LISTS[side], LISTS[1 - side]
    if today:
        return FETCH(redis, [ack, fill, *stats, KEYS.paused, KEYS.cancels, *queues],
                     [batch, 0, 0, DAILY_STAT_TTL, 1, len(KEYS.queue("")), check, "",
                      KEYS.root])
    return BEFORE(redis, [ack, fill, *stats, *queues], [batch, 0, 0, DAILY_STAT_TTL, 1])


def block(server, today: bool, batch: int, calls: int, check: int) -> tuple[float, float]:
    """(Redis µs in the script, caller wall µs) per call over ``calls`` fetches of ``batch``
    jobs."""
    redis = server.client
    pipe = redis.pipeline(transaction=False)
    pipe.delete(*LISTS, *[KEYS.queue(name) for name in QUEUES])
    texts = [job(n) for n in range(batch * calls)]
    for start in range(0, len(texts), 1000):
        pipe.lpush(KEYS.queue("default"), *texts[start:start + 1000])
    pipe.execute()
    redis.config_resetstat()
    started = time.perf_counter()
    for index in range(calls):
        call(redis, today, batch, index % 2, check)
    wall = time.perf_counter() - started
    script_usec = redis.info("commandstats")["cmdstat_evalsha"]["usec"]
    return script_usec / calls, wall / calls * 1e6


def case(server, name: str, batch: int, calls: int, blocks: int, check: int) -> None:
    figures = {True: [], False: []}
    for index in range(blocks):
        # Each goes first in every other round, so that neither always follows the refill.
        for today in ((False, True) if index % 2 == 0 else (True, False)):
            figures[today].append(block(server, today, batch, calls, check))
    median = {side: [statistics.median(f[i] for f in figures[side]) for i in (0, 1)]
              for side in figures}
    print(f"{name:<44} batch {batch:>2}: in Redis {median[False][0]:6.2f} -> "
          f"{median[True][0]:6.1f} µs/call (x{median[True][0] / median[False][0]:.2f}); "
          f"wall {median[False][1]:6.1f} -> {median[True][1]:6.1f} µs/call "
          f"(x{median[True][1] / median[False][1]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=7)
    args = parser.parse_args()
    server = Server()
    try:
        redis = server.client
        for batch in (10, 1):
            case(server, "nothing paused, no cancel marks", batch, args.calls, args.blocks, 0)
        redis.sadd(KEYS.paused, "critical")
        for batch in (10, 1):
            case(server, "queue 'critical' paused (jobs in 'default')", batch, args.calls,
                 args.blocks, 1)
        redis.delete(KEYS.paused)
        redis.zadd(KEYS.cancels, {f"{n:024x}-gone": time.time() for n in range(100)})
        for batch in (10, 1):
            case(server, "100 cancel marks kept (none matches)", batch, args.calls,
                 args.blocks, 1)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
