"""The cluster layout against the default one, side by side in one run: jobs/s, Redis CPU per
job on each primary and in total, worker CPU per job.

Not a test: it prints figures. Three targets, started here on loopback TCP with Debian's
``redis-server`` (persistence off): a Redis Cluster of 3 primaries and one of 1 primary (no
replicas, so that replication does not share the two cores), and one plain server. On each, 2
worker processes (``python -m forkq.worker``, 10 threads, reliable fetch) drain ``--jobs`` jobs
spread over three weighted queues, each job's body one ``INCR`` through forkq's client (in the
cluster that key sits on one primary, as an application's key would). The jobs are pushed
first into a staging list in each queue's hash slot and renamed into the queues once the
workers idle, so the figures hold the drain alone. Median of ``--runs`` runs, cases
alternating.

    python bench/cluster.py                      # 20,000 jobs, 3 runs
    python bench/cluster.py --jobs 5000 --runs 1
    python bench/cluster.py --queues 1           # one queue: no switching between queues
    python bench/cluster.py --shards 8           # one queue in 8 shards against 1 shard
    python bench/cluster.py --body async         # coroutine jobs (``bench_jobs.AsyncIncr``)
    python bench/cluster.py --batch              # plain jobs beside batch members, both layouts

With ``--shards N`` both cases run on the 3-primary cluster: one queue split into N shards
(``queues: [[q0, 1, {shards: N}]]``, its jobs staged evenly over the shards) against the same
queue unsharded, so what the figures compare is how the queue's Redis work spreads over the
primaries and what the shards cost in calls.

With ``--batch`` each target drains the jobs twice, as plain jobs and as the members of one
batch (its record written before the drain, no callback), so the figures say what counting a
member's end costs in each layout (``flow/batch_cluster.py``'s steps against one script).

On this 2-core machine the workers and every Redis share two cores: jobs/s is capped by the
total CPU per job, and a cluster's extra primaries do not add cores here. What carries over to
a fleet is Redis CPU per job on the busiest primary: the capacity per primary core.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

import redis as redis_py  # noqa: E402
from redis.cluster import RedisCluster  # noqa: E402

from forkq.connection import make_client  # noqa: E402
from forkq.flow import batch_cluster, batch_scripts  # noqa: E402
from forkq.flow.shards import shard_names  # noqa: E402
from forkq.keys import ClusterKeys, Keys  # noqa: E402
from harness import cluster_port, spawn_worker, tree_cpu_seconds, wait_until  # noqa: E402

SERVER = shutil.which("redis-server") or "redis-server"
#: the queues drained (``--queues`` of them; in the cluster, q0 to q2 are on three primaries)
QUEUES = ["q0", "q1", "q2"]
#: times a node is started on fresh ports before the run gives up
START_ATTEMPTS = 5


def start_node(directory: str, *args: str) -> tuple[subprocess.Popen, int]:
    """A redis-server on a free port below the kernel's ephemeral range (32768 up), its cluster
    bus port (10,000 above) too, so that no client connection takes either. Another program may
    still bind one first: a server that exits at start is started again on other ports."""
    log = os.path.join(directory, "redis.log")
    for _ in range(START_ATTEMPTS):
        port = cluster_port()
        process = subprocess.Popen([SERVER, "--port", str(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no", "--dir", directory,
                                    "--logfile", log, *args],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis_py.Redis(port=port)
        try:
            wait_until(lambda: process.poll() is not None or _answers(client), timeout=10,
                       what=f"redis-server on {port}")
        except BaseException:  # alive but silent, or the benchmark stopped: not left behind
            process.kill()
            process.wait()
            raise
        finally:
            client.close()
        if process.poll() is None:
            return process, port
    with open(log, errors="replace") as handle:
        raise RuntimeError(f"redis-server exited at start {START_ATTEMPTS} times; its log ends:"
                           f"\n{handle.read()[-1500:]}")


def _answers(client) -> bool:
    try:
        return client.ping()
    except redis_py.ConnectionError:
        return False


def start_cluster(directory: str, primaries: int = 3) -> tuple[list[subprocess.Popen], list[int]]:
    """A cluster of ``primaries`` (3, made by ``redis-cli --cluster create``, or 1, which
    takes every slot itself: ``redis-cli`` wants 3)."""
    nodes = [start_node(os.path.join(directory, f"n{i}"), "--cluster-enabled", "yes")
             for i in range(primaries) if not os.makedirs(os.path.join(directory, f"n{i}"))]
    ports = [port for _, port in nodes]
    if primaries == 1:
        redis_py.Redis(port=ports[0]).execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    else:
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                        "--cluster-yes"], check=True, stdout=subprocess.DEVNULL)
    wait_until(lambda: all(redis_py.Redis(port=p).cluster("info")["cluster_state"] == "ok"
                           for p in ports), timeout=30, what="cluster_state:ok")
    return [process for process, _ in nodes], ports


def cpu(port: int) -> float:
    info = redis_py.Redis(port=port).info("cpu")
    return info["used_cpu_sys"] + info["used_cpu_user"]


def commands(ports: list[int]) -> int:
    """Commands the servers ran so far (a script call counts once, not its inner calls)."""
    return sum(redis_py.Redis(port=p).info("stats")["total_commands_processed"] for p in ports)


#: the job class of each ``--body``
BODIES = {"incr": "bench_jobs.Incr", "async": "bench_jobs.AsyncIncr"}


def lists(keys, shards: int) -> list[tuple[str, int, str]]:
    """(queue, shard index, list name) of every list drained: each queue's shards."""
    return [(name, index, shard) for name in QUEUES
            for index, shard in enumerate(shard_names(keys, name, shards))]


#: the bid of the batch whose members ``--batch`` drains
BID = "b" * 24


def stage(client, keys, jobs: int, shards: int, body: str, batch=None) -> None:
    """``jobs`` jobs of ``body`` in a staging list beside each queue or shard (same slot); with
    ``batch`` (forkq's client of the target), as the members of batch ``BID``, whose record is
    written here."""
    drained = lists(keys, shards)
    member = f',"bid":"{BID}"' if batch else ""
    for position, (name, index, shard) in enumerate(drained):
        text = ('{"class":"%s","args":[0],"queue":"%%s","retry":true,'
                '"jid":"%%024x","created_at":1.0,"enqueued_at":1.0' % BODIES[body] + member +
                (f',"shard":{index}}}' if index else '}'))
        texts = [text % (name, n) for n in range(position, jobs, len(drained))]
        for start in range(0, len(texts), 1000):
            client.lpush(keys.queue(shard) + ":staging", *texts[start:start + 1000])
    if batch is not None:
        open_batch(batch, keys, [f"{n:024x}" for n in range(jobs)])


def open_batch(client, keys, jids: list[str]) -> None:
    """Batch ``BID``'s record with ``jids``, as a commit writes it (its jobs pushed apart)."""
    if keys.layout == "cluster":
        batch_cluster.write_record(client, keys, BID, jids, {}, reopen=False, expires_in=3600)
        batch_cluster.seal(client, keys, BID, parent="", created_at=time.time(), children=0,
                           counted=False)
    else:
        client.execute_command(*batch_scripts.open_command(
            keys, BID, jids, {}, [], expires_in=3600, created_at=time.time()))


def drain(url: str, ports: list[int], client, keys, jobs: int, tmp: str, shards: int,
          body: str, batch: bool = False) -> dict:
    for port in ports:
        redis_py.Redis(port=port).flushall()
    stage(client, keys, jobs, shards, body, make_client(url) if batch else None)
    queues = [[name, 1, {"shards": shards}] if shards > 1 else [name, 1] for name in QUEUES]
    config = {"redis_url": url, "require": ["bench_jobs"], "concurrency": 10,
              "queues": queues, "loglevel": "warning",
              "heartbeat_interval": 1, "poll_interval": 1, "metrics": {"port": None},
              "data_dir": tmp}
    workers = [spawn_worker(config, os.path.join(tmp, f"w{i}"), [ROOT, HERE])
               for i in range(2) if not os.makedirs(os.path.join(tmp, f"w{i}"), exist_ok=True)]
    try:
        wait_until(lambda: client.scard(keys.processes) >= 2, timeout=60, what="workers")
        time.sleep(1.0)  # their threads reach the idle wait
        before = [cpu(p) for p in ports]
        commands_before = commands(ports)
        worker_before = tree_cpu_seconds([w.pid for w in workers])
        started = time.perf_counter()
        for _, _, shard in lists(keys, shards):
            client.rename(keys.queue(shard) + ":staging", keys.queue(shard))
        wait_until(lambda: int(client.get("bench:counter") or 0) >= jobs, interval=0.01)
        seconds = time.perf_counter() - started
        redis_us = [(cpu(p) - b) / jobs * 1e6 for p, b in zip(ports, before)]
        calls = (commands(ports) - commands_before) / jobs
        worker_us = (tree_cpu_seconds([w.pid for w in workers]) - worker_before) / jobs * 1e6
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait()
    return {"jobs/s": jobs / seconds, "redis_us": redis_us, "worker_us": worker_us,
            "calls": calls}


def placement(client, keys, ports: list[int], shards: int) -> str:
    """Which node holds what: the queue's shards and the body's counter, node by node."""
    held = {port: [] for port in ports}
    for name, _, shard in lists(keys, shards):
        held[client.get_node_from_key(keys.queue(shard)).port].append(shard)
    held[client.get_node_from_key("bench:counter").port].append("the counter")
    return "per node: " + " / ".join(", ".join(held[port]) or "-" for port in ports)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queues", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--shards", type=int, default=1,
                        help="one queue in this many shards against 1 shard, both on the cluster")
    parser.add_argument("--body", default="incr", choices=sorted(BODIES))
    parser.add_argument("--batch", action="store_true",
                        help="plain jobs beside the members of one batch, in both layouts")
    args = parser.parse_args()
    del QUEUES[1 if args.shards > 1 else args.queues:]
    tmp = tempfile.mkdtemp(prefix="forkq-cluster-bench-")
    processes, ports = start_cluster(os.path.join(tmp, "cluster"))
    cluster = (f"redis+cluster://127.0.0.1:{ports[0]}", ports,
               RedisCluster(host="127.0.0.1", port=ports[0], decode_responses=True),
               ClusterKeys())
    if args.shards > 1:
        cases = {f"cluster, 1 queue in {args.shards} shards": (*cluster, args.shards),
                 "cluster, 1 queue, 1 shard": (*cluster, 1)}
    else:
        single, single_port = start_node(tmp)
        one, (one_port,) = start_cluster(os.path.join(tmp, "one"), primaries=1)
        processes += [single, *one]
        cases = {"cluster, 3 primaries": (*cluster, 1),
                 "cluster, 1 primary": (f"redis+cluster://127.0.0.1:{one_port}", [one_port],
                                        RedisCluster(host="127.0.0.1", port=one_port,
                                                     decode_responses=True), ClusterKeys(), 1),
                 "default, 1 server": (f"redis://127.0.0.1:{single_port}/0", [single_port],
                                       redis_py.Redis(port=single_port, decode_responses=True),
                                       Keys(), 1)}
    if args.batch:
        cases = {f"{name}{kind}": (*case, kind != "") for name, case in cases.items()
                 for kind in ("", ", batch members")}
    else:
        cases = {name: (*case, False) for name, case in cases.items()}
    results: dict[str, list[dict]] = {name: [] for name in cases}
    print(f"{args.jobs:,} {args.body} jobs, {len(QUEUES)} weighted queue(s), median of "
          f"{args.runs}, load {os.getloadavg()[0]:.2f}")
    try:
        for _ in range(args.runs):
            for name, (*case, shards, batch) in cases.items():
                results[name].append(drain(*case, args.jobs, os.path.join(tmp, "w"), shards,
                                           args.body, batch))
        for name, runs in results.items():
            per_node = [statistics.median(r["redis_us"][i] for r in runs)
                        for i in range(len(runs[0]["redis_us"]))]
            print(f"{name}: {statistics.median(r['jobs/s'] for r in runs):,.0f} jobs/s, "
                  f"Redis CPU per job {sum(per_node):.1f} us in total "
                  f"({' / '.join(f'{u:.1f}' for u in per_node)} per node), worker CPU per "
                  f"job {statistics.median(r['worker_us'] for r in runs):.0f} us, Redis "
                  f"commands per job {statistics.median(r['calls'] for r in runs):.2f} "
                  f"(the body's INCR is one)")
        if args.shards > 1:
            print(placement(cluster[2], cluster[3], ports, args.shards))
        print(f"load after: {os.getloadavg()[0]:.2f}")
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
