"""Threads and the GIL: what a worker process's CPU per job owes to its thread count, its
service threads and the interpreter's switch interval.

Not a test: it prints figures. One ``python -m forkq.worker`` process (no master) drains the
side-by-side benchmark's job (one ``INCR`` through a module-level client, ``compare_jobs.py``)
from a queue filled beforehand, at WARN (no line per job), on a private redis-server on
loopback TCP, for each variant in turn; each run goes through every variant once, so a change
of the machine's speed hits them all alike.

    python bench/threads_cost.py                  # 20,000 jobs a drain, median of 3 runs
    python bench/threads_cost.py --jobs 5000 --runs 1

Variants: ``concurrency`` 1, 2, 5 and 10 at the defaults (``adaptive_concurrency`` on: fewer
threads take jobs while the process is bound by its interpreter, and ``cpu_affinity: auto``:
its threads keep to one CPU while that makes its jobs faster); 10, and two processes of 10,
with ``cpu_affinity: false`` (threads on any CPU) and with ``adaptive_concurrency`` off (every
thread takes jobs, on any CPU); 10 with the service threads'
intervals stretched (heartbeat and poller every 60 s instead of 10 and 5, control watch every
5 s instead of 0.5, idle fetches blocking 5 s instead of 1); 10 with
``sys.setswitchinterval`` at 1, 20 and 100 ms instead of Python's 5 (set by the required
module ``threads_worker.py``, as an application module preloaded before the fork could); two
processes of 1 and of 10 threads; 10 threads pinned to one CPU, and two processes of 10 each
pinned to a CPU of its own (``PINNED``). A CPU-bound body (``threads_worker.BenchSpin``: about
1 ms of pure Python, then the ``INCR``) runs with 1 and 10 threads (10 also with
``cpu_affinity: false``, with the gate off, and pinned) and with 2 processes of each. Per job: worker CPU (user and system), context switches and moves between
CPUs of all its threads, Redis CPU. Then
a worker's CPU per second while idle (no job), default and stretched: what the service
threads and the idle processors' wake-ups cost with nothing to do.
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

from harness import Server, server_cpu_seconds, spawn_worker, wait_until  # noqa: E402

#: variant → (processes, concurrency, config overrides, variables for ``threads_worker.py``)
STRETCHED = {"heartbeat_interval": 60, "heartbeat_ttl": 180, "poll_interval": 60}
STRETCHED_TUNING = {"BENCH_CONTROL_INTERVAL": "5", "BENCH_IDLE_TIMEOUT": "5"}
VARIANTS = {
    "1 thread": (1, 1, {}, {}),
    "2 threads": (1, 2, {}, {}),
    "5 threads": (1, 5, {}, {}),
    "10 threads": (1, 10, {}, {}),
    "10 threads: cpu_affinity false": (1, 10, {"cpu_affinity": False}, {}),
    "10 threads: adaptive_concurrency off": (1, 10, {"adaptive_concurrency": False}, {}),
    "10 threads: service threads stretched": (1, 10, STRETCHED, STRETCHED_TUNING),
    "10 threads: switch interval 1 ms": (1, 10, {}, {"BENCH_SWITCH_INTERVAL": "0.001"}),
    "10 threads: switch interval 20 ms": (1, 10, {}, {"BENCH_SWITCH_INTERVAL": "0.02"}),
    "10 threads: switch interval 100 ms": (1, 10, {}, {"BENCH_SWITCH_INTERVAL": "0.1"}),
    "10 threads: pinned to one CPU": (1, 10, {}, {}),
    "2 processes × 1 thread": (2, 1, {}, {}),
    "2 processes × 10 threads": (2, 10, {}, {}),
    "2 processes × 10 threads: cpu_affinity false": (2, 10, {"cpu_affinity": False}, {}),
    "2 processes × 10 threads: adaptive_concurrency off": (2, 10, {"adaptive_concurrency": False},
                                                          {}),
    "2 processes × 10 threads: each pinned to a CPU of its own": (2, 10, {}, {}),
}
#: variants whose worker processes are pinned, every thread, to one CPU each (the n-th
#: process to the n-th CPU the harness may use), as ``taskset`` would pin them
PINNED = {"10 threads: pinned to one CPU",
          "2 processes × 10 threads: each pinned to a CPU of its own"}
#: the CPU-bound body's variants: how threads and processes share a CPU-bound job
CPU_VARIANTS = ["1 thread", "10 threads", "10 threads: cpu_affinity false",
                "10 threads: adaptive_concurrency off",
                "10 threads: pinned to one CPU", "2 processes × 1 thread",
                "2 processes × 10 threads"]
#: body → (job class name in the workers, jobs a drain as a share of ``--jobs``)
BODIES = {"INCR": ("BenchIncr", 1), "1 ms of pure Python, then INCR": ("BenchSpin", 0.25)}


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


def migrations(pid: int) -> int:
    """Moves from one CPU to another of every thread of ``pid`` (0 where the kernel does not
    say: ``/proc/PID/task/TID/sched`` needs its scheduler statistics)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/sched") as handle:
                total += sum(int(line.split(":")[1]) for line in handle
                             if line.startswith("se.nr_migrations"))
        except FileNotFoundError:
            continue  # a thread that ended meanwhile, or no scheduler statistics
    return total


def user_system(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def start(server, tmp: str, variant: str) -> list:
    """The variant's worker processes, once every thread of each waits on Redis."""
    processes, concurrency, overrides, tuning = VARIANTS[variant]
    config = {"redis_url": server.url, "require": ["compare_jobs", "threads_worker"],
              "concurrency": concurrency, "loglevel": "warning", "metrics": {"port": None},
              "data_dir": tmp, **overrides}
    os.environ.update({"BENCH_SWITCH_INTERVAL": "", "BENCH_CONTROL_INTERVAL": "",
                       "BENCH_IDLE_TIMEOUT": "", **tuning})
    workers = []
    for number in range(processes):
        home = os.path.join(tmp, str(number))
        os.mkdir(home)
        workers.append(spawn_worker({**config, "data_dir": home}, home, [ROOT, HERE]))
    wait_until(lambda: int(server.client.info("clients")["blocked_clients"])
               >= processes * concurrency, timeout=60, what=f"{variant}: threads blocked")
    if variant in PINNED:
        cpus = sorted(os.sched_getaffinity(0))
        for number, worker in enumerate(workers):
            pin(worker.pid, cpus[number % len(cpus)])
    time.sleep(1.0)  # past start-up: first heartbeat, recovery
    return workers


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of ``pid`` to ``cpu``: on Linux each thread has its own affinity,
    and only threads started later inherit their creator's."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), {cpu})
        except ProcessLookupError:
            continue  # a thread that ended meanwhile


def stop(workers: list) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(30)


def sample(server, pids: list[int]) -> tuple:
    times = [user_system(pid) for pid in pids]
    return (sum(user for user, _ in times), sum(system for _, system in times),
            sum(context_switches(pid) for pid in pids), sum(migrations(pid) for pid in pids),
            server_cpu_seconds(server.client))


def drain(server, variant: str, body: str, jobs: int) -> dict:
    """Per job: worker CPU (user, system), context switches, Redis CPU; and jobs/s."""
    client = server.client
    client.flushall()
    import compare_jobs
    name, share = BODIES[body]
    jobs = max(100, int(jobs * share))
    job_class = compare_jobs.BenchIncr if name == "BenchIncr" else _spin_class()
    job_class.set(queue="staging").perform_bulk([[jobs]] * jobs)
    with tempfile.TemporaryDirectory(prefix="forkq-threads-") as tmp:
        workers = start(server, tmp, variant)
        try:
            pids = [worker.pid for worker in workers]
            before, started = sample(server, pids), time.perf_counter()
            client.rename("queue:staging", "queue:default")
            wait_until(lambda: int(client.get("bench:counter") or 0) >= jobs, interval=0.01)
            seconds, after = time.perf_counter() - started, sample(server, pids)
        finally:
            stop(workers)
    user, system, switches, moves, redis_cpu = (b - a for a, b in zip(before, after))
    return {"rate": jobs / seconds, "cpu_us": (user + system) / jobs * 1e6,
            "user_us": user / jobs * 1e6, "system_us": system / jobs * 1e6,
            "switches": switches / jobs, "moves": moves / jobs, "redis_us": redis_cpu / jobs * 1e6}


def _spin_class():
    import threads_worker
    return threads_worker.BenchSpin


def idle(server, variant: str, seconds: float) -> dict:
    """CPU ms per second and context switches per second of a worker with nothing to do."""
    server.client.flushall()
    with tempfile.TemporaryDirectory(prefix="forkq-threads-") as tmp:
        workers = start(server, tmp, variant)
        try:
            pids = [worker.pid for worker in workers]
            before = sample(server, pids)
            time.sleep(seconds)
            after = sample(server, pids)
        finally:
            stop(workers)
    user, system, switches, _, redis_cpu = (b - a for a, b in zip(before, after))
    return {"cpu_ms_per_s": (user + system) / seconds * 1e3, "switches_per_s": switches / seconds,
            "redis_ms_per_s": redis_cpu / seconds * 1e3}


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
    parser.add_argument("--jobs", type=int, default=20_000,
                        help="INCR jobs a drain (the CPU-bound body drains a quarter as many)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="seconds an idle worker is watched")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        type=lambda text: text.split(","), help="comma-separated, of: "
                        + ", ".join(VARIANTS))
    args = parser.parse_args()
    server = Server()
    os.environ["BENCH_REDIS_URL"] = server.url
    forkq.configure(redis_url=server.url)
    load = os.getloadavg()[0]
    plan = {"INCR": args.variants,
            "1 ms of pure Python, then INCR": [v for v in CPU_VARIANTS if v in args.variants]}
    drains = {(body, variant): [] for body, variants in plan.items() for variant in variants}
    idles = {variant: [] for variant in ("10 threads", "10 threads: service threads stretched")}
    try:
        for number in range(args.runs):
            for body, variant in drains:
                drains[body, variant].append(drain(server, variant, body, args.jobs))
            for variant in idles:
                idles[variant].append(idle(server, variant, args.idle_seconds))
            print(f"run {number + 1} of {args.runs} done", file=sys.stderr)
    finally:
        server.stop()
    print(f"forkq {forkq.__version__}, Python {sys.version.split()[0]}, {args.jobs:,} INCR "
          f"jobs a drain, median of {args.runs} runs (min–max), {os.cpu_count()} CPUs, load "
          f"average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    for body in plan:
        print(f"\nbody: {body}\n")
        print("| variant | jobs/s | worker CPU per job | of which user | of which system | "
              "context switches per job | moves between CPUs per job | Redis CPU per job |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for variant in plan[body]:
            print(line(variant, drains[body, variant],
                       [("rate", "{:,.0f}"), ("cpu_us", "{:,.0f} µs"), ("user_us", "{:,.0f} µs"),
                        ("system_us", "{:,.0f} µs"), ("switches", "{:.2f}"),
                        ("moves", "{:.3f}"), ("redis_us", "{:.0f} µs")]))
    print("\n| idle worker, 10 threads | CPU per second | context switches per second | "
          "Redis CPU per second |")
    print("| --- | --- | --- | --- |")
    for variant, values in idles.items():
        print(line(variant.replace("10 threads: ", "").replace("10 threads", "defaults"), values,
                   [("cpu_ms_per_s", "{:.1f} ms"), ("switches_per_s", "{:.0f}"),
                    ("redis_ms_per_s", "{:.2f} ms")]))


if __name__ == "__main__":
    main()
