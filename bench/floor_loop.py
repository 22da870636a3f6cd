"""The least a Python job system with reliable fetch does per job, for the side-by-side
benchmark (``compare.py``): what forkq's own CPU per job is weighed against besides the body.

    python bench/floor_loop.py [THREADS]

Each thread has its own connection and two private lists used in turn, and blocks on
``bench:go`` like ``body_alone.py``; then one script call acknowledges its previous batch and
moves up to 10 jobs from ``queue:default`` into the other list, and it decodes each job's JSON
and calls the body with the job's arguments, until a fetch comes back empty. Nothing else: no
logging, no metrics, no checks of the payload, no retries, no heartbeat.
"""

import json
import os
import sys

import redis

from compare_jobs import GO, REDIS, incr, run_threads

BATCH = 10
FETCH = """
redis.call('DEL', KEYS[2])
local jobs = redis.call('RPOP', KEYS[1], ARGV[1])
if jobs then redis.call('RPUSH', KEYS[3], unpack(jobs)) end
return jobs
"""


def drain(index: int) -> None:
    own = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], single_connection_client=True)
    fetch = own.register_script(FETCH)
    lists = [f"bench:floor:{os.getpid()}:{index}:{side}" for side in "ab"]
    REDIS.blpop(GO)
    side = 0
    while True:
        jobs = fetch(keys=["queue:default", lists[side], lists[1 - side]], args=[BATCH])
        side = 1 - side
        if not jobs:
            own.close()
            return
        for text in jobs:
            incr(*json.loads(text)["args"])


def main() -> None:
    run_threads(drain, int(sys.argv[1]) if len(sys.argv) > 1 else 10)


if __name__ == "__main__":
    main()
