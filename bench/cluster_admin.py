"""The admin side's reads (the web UI's queues list, dashboard totals, Scheduled page) on a
cluster of 3 primaries against one plain server, side by side in one run.

Not a test: it prints, per read, the median wall time of ``--runs`` reads from this process and
the Redis commands one read sends. Both targets are started here (``bench/cluster.py``'s
``start_cluster`` and ``start_node``) and filled alike: ``--queues`` queues of 10 jobs each,
each with 50 scheduled jobs whose times interleave across the queues (so a page of the
cluster's Scheduled page draws on every queue's set).

    python bench/cluster_admin.py                # 100 queues
    python bench/cluster_admin.py --queues 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from cluster import commands, start_cluster, start_node  # noqa: E402

from forkq import connection  # noqa: E402
from forkq.api import Api  # noqa: E402
from forkq.keys import ClusterKeys, Keys  # noqa: E402
from forkq.payload import dumps  # noqa: E402

JOBS, SCHEDULED = 10, 50


def fill(redis, keys, queues: int) -> None:
    now = time.time()
    pipe = redis.pipeline(transaction=False)
    for q in range(queues):
        name = f"q{q}"
        pipe.sadd(keys.queues, name)
        pipe.lpush(keys.queue(name), *[dumps({"class": "X", "args": [i], "jid": f"{q}-{i}",
                                              "queue": name, "enqueued_at": now})
                                       for i in range(JOBS)])
        pipe.zadd(keys.schedule_for(name), {dumps({"class": "X", "args": [i], "jid": f"s{q}-{i}",
                                                   "queue": name}): now + q + i * queues
                                            for i in range(SCHEDULED)})
    pipe.execute()


def timed(label: str, ports: list[int], read, runs: int) -> None:
    read()
    before, times = commands(ports), []
    for _ in range(runs):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    sent = (commands(ports) - before - len(ports)) / runs  # less the INFO of the count
    print(f"  {label:36} {statistics.median(times) * 1000:8.2f} ms {sent:6.0f} commands")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="forkq-bench-") as tmp:
        processes, ports = start_cluster(os.path.join(tmp, "cluster"))
        os.makedirs(os.path.join(tmp, "single"))
        single, port = start_node(os.path.join(tmp, "single"))
        processes.append(single)
        try:
            hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
            for name, url, keys, counted in (
                    ("cluster of 3 primaries", f"redis+cluster://{hosts}", ClusterKeys(), ports),
                    ("one server, default layout", f"redis://127.0.0.1:{port}/0", Keys(),
                     [port])):
                redis = connection.make_client(connection.resolve_url(url, None))
                fill(redis, keys, args.queues)
                api = Api(redis, keys)
                print(f"{name}: {args.queues} queues of {JOBS} jobs, {SCHEDULED} scheduled each")
                timed("queue_summaries (queues list)", counted, api.queue_summaries, args.runs)
                timed("stats (dashboard totals)", counted, api.stats, args.runs)
                timed("scheduled.size", counted, lambda: api.scheduled.size, args.runs)
                timed("scheduled.page(0, 25)", counted, lambda: api.scheduled.page(0, 25),
                      args.runs)
                timed("scheduled.page(975, 25) (page 40)", counted,
                      lambda: api.scheduled.page(975, 25), args.runs)
        finally:
            for process in processes:
                process.terminate()
                process.wait()


if __name__ == "__main__":
    main()
