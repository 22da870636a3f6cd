"""Coroutine jobs side by side: forkq, arq, SAQ, taskiq (taskiq-redis) and streaq, one worker
process each, the same bodies (``aio_body.py``) and the same number of jobs at once.

Per run, for each system in turn (the order rotates between runs) and each body (``incr``:
one ``await redis.incr()``; ``sleep``: ``await asyncio.sleep(0.01)`` then that ``INCR``):
``--jobs`` jobs are pushed with the system's own client before its worker starts; the worker
then drains them, timed from the first completion to the last (completions are counted by the
bodies' ``INCR``). Worker CPU is user + system of all the worker's processes (forkq's and
taskiq's master and child) over that window, Redis CPU comes from ``INFO`` deltas, memory is
the worker's processes' RSS (and PSS, which counts pages shared after fork once) when the drain
ends. Then, on that idle worker, ``--probes`` jobs pushed one at a time 10 ms apart give the
enqueue-to-start latency. Every system logs warnings only (no per-job lines). A drain in which
no job completes for ``STALL`` seconds (a worker that stops short of its jobs) is named under
the table and left out of that system's figures; the other drains run on.

Not a test: prints a Markdown table of medians (min–max over the runs) and the ratio of forkq
to the best peer on each figure (> 1 favours forkq), and keeps the raw figures as JSON.

    python bench/compare_async.py                       # 5,000 jobs, 3 runs, every system
    python bench/compare_async.py --jobs 20 --runs 1 --probes 3 --only forkq arq
    python bench/compare_async.py --only forkq forkq-threads   # coroutine beside thread jobs
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from statistics import median

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

import forkq  # noqa: E402

import aio_body  # noqa: E402
from harness import Group, Server, percentile, server_cpu_seconds, wait_until  # noqa: E402
from report import spread  # noqa: E402

#: system → (the module holding its jobs and push, the package it needs)
SYSTEMS = {
    "forkq": ("aio_forkq", "forkq"),
    "arq": ("aio_arq", "arq"),
    "saq": ("aio_saq", "saq"),
    "taskiq": ("aio_taskiq", "taskiq_redis"),
    "streaq": ("aio_streaq", "streaq"),
    # not a peer: forkq's thread jobs with the same bodies (10 threads), beside its coroutines
    "forkq-threads": ("aio_forkq_threads", "forkq"),
}
#: the systems that are forkq (the others are the peers it is rated against)
OURS = ("forkq", "forkq-threads")
BODIES = ("incr", "sleep")
#: seconds between latency probes
PROBE_GAP = 0.01
#: seconds between polls of the completion counter
POLL = 0.002
#: seconds without a completion after which a drain counts as stalled
STALL = 30.0


class Stalled(Exception):
    """A system's drain stopped short of its jobs: none completed for ``STALL`` seconds."""


def redis_7() -> str | None:
    """A redis-server 7 or newer on PATH (streaq calls Redis functions, new in 7.0)."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.", version)
    return binary if found and int(found.group(1)) >= 7 else None


def available(binary: str | None) -> dict[str, str]:
    """System → why it cannot run here, for each system whose package (or Redis) is missing."""
    missing = {}
    if binary is None:
        missing["streaq"] = ("streaq needs Redis 7 or newer (FUNCTION), and no redis-server 7 "
                             "is on PATH (Debian: apt-get install redis-server)")
    for name, (_, package) in SYSTEMS.items():
        try:
            if name not in missing:
                importlib.import_module(package)
        except ImportError as exc:
            missing[name] = f"{package} is not installed ({exc}); pip install -e '.[bench]'"
    return missing


def worker_command(name: str, workdir: str, url: str, at_once: int) -> list[str]:
    """The worker process as each system starts it, at its fastest documented setting."""
    if name in OURS:
        config = {"redis_url": url, "require": [SYSTEMS[name][0]], "processes": 1,
                  "concurrency": 10, "async_concurrency": at_once, "queues": ["default"],
                  "loglevel": "warning", "metrics": {"port": None},
                  "logfile": os.path.join(workdir, "forkq-worker.log"),
                  "data_dir": os.path.join(workdir, "data")}
        path = os.path.join(workdir, "forkq.yml")
        with open(path, "w") as handle:
            json.dump(config, handle)  # JSON is YAML
        return [sys.executable, "-m", "forkq.cli", "start", "-c", path]
    if name == "taskiq":
        return [sys.executable, "-m", "taskiq", "worker", "aio_taskiq:broker", "--workers", "1",
                "--max-async-tasks", str(at_once), "--log-level", "WARNING"]
    return [sys.executable, "-c", f"import {SYSTEMS[name][0]} as m; m.run()"]


def environment(url: str, at_once: int) -> dict:
    return dict(os.environ, BENCH_REDIS_URL=url, REDIS_URL=url, BENCH_AT_ONCE=str(at_once),
                PYTHONPATH=os.pathsep.join([ROOT, HERE]))


def memory(group: Group) -> dict:
    """RSS and PSS in MB of the worker's processes, descendants included."""
    rss = pss = 0
    for pid in group.pids:
        root = psutil.Process(pid)
        for process in [root] + root.children(recursive=True):
            info = process.memory_full_info()
            rss, pss = rss + info.rss, pss + info.pss
    return {"rss_mb": rss / 2**20, "pss_mb": pss / 2**20}


def drain(server: Server, group: Group, jobs: int, spawned: float, redis_before: float) -> dict:
    """Wait for the first completion, then time the rest of the drain. A drain that ended
    before the first look (a few jobs) is timed from the worker's start instead (``spawned``,
    its ``perf_counter``; ``redis_before``, the server's CPU seconds then)."""
    client = server.client

    def count() -> int:
        return int(client.get(aio_body.COUNTER) or 0)

    wait_until(lambda: group.check_alive() or count() >= 1, timeout=120, interval=POLL,
               what="the first completion")
    started, done = time.perf_counter(), count()
    cpu, redis_cpu = group.cpu_seconds(), server_cpu_seconds(client)
    if done >= jobs:
        started, done, cpu, redis_cpu = spawned, 0, 0.0, redis_before
    wait_for_the_end(count, jobs)
    elapsed = time.perf_counter() - started
    ran = jobs - done
    return {"rate": ran / elapsed, "cpu_us": (group.cpu_seconds() - cpu) / ran * 1e6,
            "redis_us": (server_cpu_seconds(client) - redis_cpu) / ran * 1e6, **memory(group)}


def wait_for_the_end(count, jobs: int) -> None:
    """Until ``count()`` reaches ``jobs``; ``Stalled`` once it stays put ``STALL`` seconds."""
    last, moved = count(), time.monotonic()
    while last < jobs:
        time.sleep(POLL)
        now = count()
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > STALL:
            raise Stalled(f"{last:,} of {jobs:,} jobs completed, then none for {STALL:.0f} s")


async def latency(server: Server, module, probes: int) -> dict:
    client = server.client
    for index in range(probes):
        await module.push("probe", 1, [time.time()])
        await asyncio.to_thread(wait_until, lambda: client.llen(aio_body.LATENCY) > index,
                                timeout=30, what="a latency probe's start")
        await asyncio.sleep(PROBE_GAP)
    delays = [float(value) * 1000 for value in client.lrange(aio_body.LATENCY, 0, -1)]
    return {"p50": percentile(delays, 50), "p99": percentile(delays, 99)}


async def measure(server: Server, name: str, args: argparse.Namespace) -> dict:
    """One system's drains of each body, and its idle latency after the ``incr`` drain; the
    system's producer stays open in this one task (streaq's must be left where it opened)."""
    module = importlib.import_module(SYSTEMS[name][0])
    figures = {}
    with tempfile.TemporaryDirectory() as workdir:
        await module.open_producer()
        try:
            for body in BODIES:
                server.client.flushall()
                await module.push(body, args.jobs, [])
                spawned, redis_before = time.perf_counter(), server_cpu_seconds(server.client)
                group = Group(f"{name}-{body}", [worker_command(name, workdir, server.url,
                                                                args.at_once)],
                              environment(server.url, args.at_once), workdir)
                try:
                    figures[body] = await asyncio.to_thread(drain, server, group, args.jobs,
                                                            spawned, redis_before)
                    if body == "incr" and args.probes:
                        figures["latency"] = await latency(server, module, args.probes)
                except Stalled as exc:  # a peer's worker that stops short: the rest run on
                    figures[body] = {"stalled": str(exc)}
                    print(f"{name}, {body}: stalled ({exc})", file=sys.stderr, flush=True)
                finally:
                    group.stop()
        finally:
            await module.close_producer()
    return figures


#: table rows: (label, where in a system's figures, kind, higher is better)
ROWS = [(f"{body}: {label}", (body, field), kind, higher)
        for body in BODIES
        for label, field, kind, higher in [("jobs/s", "rate", "rate", True),
                                           ("worker CPU per job", "cpu_us", "us", False),
                                           ("Redis CPU per job", "redis_us", "us", False)]] + [
    ("idle latency, enqueue to start, p50", ("latency", "p50"), "ms", False),
    ("idle latency, enqueue to start, p99", ("latency", "p99"), "ms", False),
    ("worker memory, RSS of its processes (MB)", ("incr", "rss_mb"), "count", False),
    ("worker memory, PSS of its processes (MB)", ("incr", "pss_mb"), "count", False),
]


def table(runs: list[dict], names: list[str]) -> list[dict]:
    """Each figure's values per system, and forkq's ratio to the best peer's median (per run:
    forkq against that peer in the same run; > 1 favours forkq)."""
    rows = []
    for label, (section, field), kind, higher in ROWS:
        values = {name: [run[name][section][field] for run in runs
                         if field in run[name].get(section, {})] for name in names}
        entry = {"figure": label, "kind": kind, "values": values, "best_peer": None,
                 "ratio": None}
        # without a peer in the run, forkq's coroutine jobs are rated against its thread jobs
        peers = ([name for name in names if name not in OURS and values[name]]
                 or [name for name in names if name == "forkq-threads" and values[name]])
        if "forkq" in names and peers and values["forkq"]:
            pick = max if higher else min
            best = pick(peers, key=lambda name: median(values[name]))
            entry["best_peer"] = best
            paired = [(run["forkq"][section][field], run[best][section][field])
                      for run in runs if field in run["forkq"].get(section, {})
                      and field in run[best].get(section, {})]
            entry["ratio"] = [_ratio(f, p) if higher else _ratio(p, f) for f, p in paired]
        rows.append(entry)
    return rows


def _ratio(top: float, bottom: float) -> float:
    # a figure too small to measure (Redis CPU of a tiny drain) is no ratio
    return top / bottom if bottom else float("nan")


def markdown(meta: dict, rows: list[dict], names: list[str]) -> str:
    lines = [f"forkq {meta['forkq']}, Python {meta['python']}, {meta['jobs']:,} jobs a drain, "
             f"{meta['at_once']} at once, {meta['probes']} latency probes, redis-server "
             f"{meta['redis']} on loopback TCP, median of {meta['runs']} run(s) (min–max); "
             f"load average {meta['load_before']:.2f} before, {meta['load_after']:.2f} after; "
             f"{meta['cpus']} CPUs.", "",
             "| figure | " + " | ".join(names) + " | forkq / best peer (> 1: forkq better) |",
             "| --- | " + " | ".join("---" for _ in names) + " | --- |"]
    for entry in rows:
        cells = [spread(entry["values"][name], entry["kind"]) if entry["values"][name] else "–"
                 for name in names]
        ratio = (f"{spread(entry['ratio'], 'ratio')} vs {entry['best_peer']}"
                 if entry["ratio"] else "–")
        lines.append(f"| {entry['figure']} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def stalled(runs: list[dict]) -> list[str]:
    """A line for each drain that stalled, which its system's figures leave out."""
    return [f"stalled, left out: {name}, {body}, run {index}: {figures['stalled']}"
            for index, run in enumerate(runs, 1) for name, bodies in run.items()
            for body, figures in bodies.items() if "stalled" in figures]


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--at-once", type=int, default=100, help="jobs running at once")
    parser.add_argument("--only", nargs="+", choices=list(SYSTEMS),
                        default=[name for name in SYSTEMS if name != "forkq-threads"],
                        help="systems to run (forkq-threads: forkq's thread jobs, same bodies)")
    parser.add_argument("--json", help="where to write the raw figures")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    binary = redis_7()
    missing = available(binary)
    for name in args.only:
        if name in missing:
            print(f"skipped {name}: {missing[name]}")
    names = [name for name in args.only if name not in missing]
    server = Server(binary=binary)
    os.environ["BENCH_REDIS_URL"] = server.url  # the push modules read it when imported
    meta = {"forkq": forkq.__version__, "python": sys.version.split()[0], "jobs": args.jobs,
            "runs": args.runs, "probes": args.probes, "at_once": args.at_once,
            "cpus": os.cpu_count(), "redis": server.client.info("server")["redis_version"],
            "load_before": os.getloadavg()[0], "skipped": missing}
    runs = []
    try:
        for index in range(args.runs):
            order = names[index % len(names):] + names[:index % len(names)]
            runs.append({name: asyncio.run(measure(server, name, args)) for name in order})
    finally:
        server.stop()
    meta["load_after"] = os.getloadavg()[0]
    rows = table(runs, names)
    print(markdown(meta, rows, names))
    for note in stalled(runs):
        print(note)
    record = {"meta": meta, "runs": runs, "rows": rows}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=1)
    return record


if __name__ == "__main__":
    main()
