"""Threads and the GIL: what a worker process's CPU per job owes to its thread count, its
service threads and the interpreter's switch interval.

Not a test: it prints figures. One ``python -m forkq.worker`` process (no master) drains the
side-by-side benchmark's job (one ``INCR`` through a module-level client, ``compare_jobs.py``)
from a queue filled beforehand, at WARN (no line per job), on a private redis-server on
loopback TCP, for each variant in turn; each run goes through every variant once, so a change
of the machine's speed hits them all alike.

    python bench/threads_cost.py                  # 20,000 jobs a drain, median of 3 runs
    python bench/threads_cost.py --jobs 5000 --runs 1

Variants: ``concurrency`` 1, 2, 5 and 10 at the defaults; 10 with the service threads'
intervals stretched (heartbeat and poller every 60 s instead of 10 and 5, control watch every
5 s instead of 0.5, idle fetches blocking 5 s instead of 1); 10 with
``sys.setswitchinterval`` at 1, 20 and 100 ms instead of Python's 5 (set by the required
module ``threads_tuning.py``, as an application module preloaded before the fork could).
Per job: worker CPU (user and system), context switches of all its threads, Redis CPU. Then
each worker's CPU per second while idle (no job), default and stretched: what the service
threads and idle processors' wake-ups cost with nothing to do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

import forkq  # noqa: E402

from harness import Server, spawn_worker, staged_drain, tree_cpu_seconds, wait_until  # noqa: E402

#: variant → (concurrency, config overrides, tuning variables for ``threads_tuning.py``)
STRETCHED = {"heartbeat_interval": 60, "heartbeat_ttl": 180, "poll_interval": 60}
STRETCHED_TUNING = {"BENCH_CONTROL_INTERVAL": "5", "BENCH_IDLE_TIMEOUT": "5"}
VARIANTS = {
    "1 thread": (1, {}, {}),
    "2 threads": (2, {}, {}),
    "5 threads": (5, {}, {}),
    "10 threads": (10, {}, {}),
    "10 threads: service threads stretched": (10, STRETCHED, STRETCHED_TUNING),
    "10 threads: switch interval 1 ms": (10, {}, {"BENCH_SWITCH_INTERVAL": "0.001"}),
    "10 threads: switch interval 20 ms": (10, {}, {"BENCH_SWITCH_INTERVAL": "0.02"}),
    "10 threads: switch interval 100 ms": (10, {}, {"BENCH_SWITCH_INTERVAL": "0.1"}),
}
#: seconds an idle worker is watched
IDLE_SECONDS = 10.0


def context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of every thread of ``pid``."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as handle:
                total += sum(int(line.split()[1]) for line in handle
                             if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")))
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
    return total


def user_system(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def start(server, tmp: str, variant: str):
    concurrency, overrides, tuning = VARIANTS[variant]
    config = {"redis_url": server.url, "require": ["compare_jobs", "threads_tuning"],
              "concurrency": concurrency, "loglevel": "warning", "metrics": {"port": None},
              "data_dir": tmp, **overrides}
    os.environ.update({"BENCH_SWITCH_INTERVAL": "", "BENCH_CONTROL_INTERVAL": "",
                       "BENCH_IDLE_TIMEOUT": "", **tuning})
    worker = spawn_worker(config, tmp, [ROOT, HERE])
    wait_until(lambda: int(server.client.info("clients")["blocked_clients"]) >= concurrency,
               timeout=60, what=f"{variant}: threads blocked")
    return worker


def drain(server, variant: str, jobs: int) -> dict:
    client = server.client
    client.flushall()
    import compare_jobs
    compare_jobs.BenchIncr.set(queue="staging").perform_bulk([[jobs]] * jobs)
    with tempfile.TemporaryDirectory(prefix="forkq-threads-") as tmp:
        worker = start(server, tmp, variant)
        try:
            switches, (user, system) = context_switches(worker.pid), user_system(worker.pid)
            started = time.perf_counter()
            found = staged_drain(client, worker, jobs)
            seconds = time.perf_counter() - started
            switches = context_switches(worker.pid) - switches
            user_after, system_after = user_system(worker.pid)
        finally:
            worker.terminate()
            worker.wait(30)
    return {**found, "user_us": (user_after - user) / jobs * 1e6,
            "system_us": (system_after - system) / jobs * 1e6,
            "switches": switches / jobs, "rate": jobs / seconds}


def idle(server, variant: str) -> dict:
    """CPU ms per second and context switches per second of a worker with nothing to do."""
    server.client.flushall()
    with tempfile.TemporaryDirectory(prefix="forkq-threads-") as tmp:
        worker = start(server, tmp, variant)
        try:
            time.sleep(2.0)  # past start-up: first heartbeat, recovery
            cpu, switches = tree_cpu_seconds([worker.pid]), context_switches(worker.pid)
            time.sleep(IDLE_SECONDS)
            cpu = tree_cpu_seconds([worker.pid]) - cpu
            switches = context_switches(worker.pid) - switches
        finally:
            worker.terminate()
            worker.wait(30)
    return {"cpu_ms_per_s": cpu / IDLE_SECONDS * 1e3, "switches_per_s": switches / IDLE_SECONDS}


def line(name: str, values: list[dict], fields: list[tuple[str, str]]) -> str:
    cells = []
    for field, fmt in fields:
        numbers = [v[field] for v in values]
        text = fmt.format(statistics.median(numbers))
        if len(numbers) > 1:
            text += f" ({fmt.format(min(numbers))}–{fmt.format(max(numbers))})"
        cells.append(text)
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        type=lambda text: text.split(","), help="comma-separated, of: "
                        + ", ".join(VARIANTS))
    args = parser.parse_args()
    server = Server()
    os.environ["BENCH_REDIS_URL"] = server.url
    forkq.configure(redis_url=server.url)
    load = os.getloadavg()[0]
    drains = {variant: [] for variant in args.variants}
    idles = {variant: [] for variant in ("10 threads", "10 threads: service threads stretched")}
    try:
        for number in range(args.runs):
            for variant in args.variants:
                drains[variant].append(drain(server, variant, args.jobs))
            for variant in idles:
                idles[variant].append(idle(server, variant))
            print(f"run {number + 1} of {args.runs} done", file=sys.stderr)
    finally:
        server.stop()
    print(f"forkq {forkq.__version__}, Python {sys.version.split()[0]}, one worker process, "
          f"{args.jobs:,} jobs a drain, median of {args.runs} runs (min–max), {os.cpu_count()} "
          f"CPUs, load average {load:.2f} before, {os.getloadavg()[0]:.2f} after\n")
    print("| variant | jobs/s | worker CPU per job | of which user | of which system | "
          "context switches per job | Redis CPU per job |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for variant, values in drains.items():
        print(line(variant, values, [("rate", "{:,.0f}"), ("cpu_us", "{:.0f} µs"),
                                     ("user_us", "{:.0f} µs"), ("system_us", "{:.0f} µs"),
                                     ("switches", "{:.2f}"), ("redis_us", "{:.0f} µs")]))
    print("\n| idle worker, 10 threads | CPU per second | context switches per second |")
    print("| --- | --- | --- |")
    for variant, values in idles.items():
        print(line(variant.replace("10 threads: ", "").replace("10 threads", "defaults"), values,
                   [("cpu_ms_per_s", "{:.1f} ms"), ("switches_per_s", "{:.0f}")]))


if __name__ == "__main__":
    main()
