"""Django's tasks framework on three backends, side by side: forkq's ``ForkqBackend``,
``django-tasks-rq`` (rq's worker) and ``django-tasks-db`` (its ``db_worker``).

    python bench/compare_django.py                        # 2,000 tasks, median of 3 runs
    python bench/compare_django.py --rq-tasks 300         # rq's forking worker: fewer tasks
    python bench/compare_django.py --tasks 200 --runs 1   # a quick check
    python bench/compare_django.py --json django.json     # keep every run's figures elsewhere
    python bench/compare_django.py --concurrency 1        # forkq's workers with 1 thread each

Needs the ``bench`` extra (``pip install -e '.[bench]'``); a peer whose package is absent is
left out, with the reason printed. Not a test: nothing here asserts on speed.

One project (``bench/django_site``, SQLite, a private redis-server on loopback TCP) and two
task bodies, the same for every backend: ``incr`` (one ``INCR`` through a module-level redis-py
client) and ``orm`` (one ORM write of a row to SQLite). For each body, each system and 1 and 2
worker processes, on an empty Redis and a fresh copy of the migrated database:

- enqueue: ``--tasks`` tasks, one ``task.enqueue()`` at a time, in a process of their own
  (``django_site/enqueue.py``; ``django.tasks`` has no bulk enqueue): tasks/s, and that
  process's CPU per task;
- drain: then the system's workers start, each at its defaults: ``forkq start`` (its master
  and ``processes`` children of 10 threads; the metrics exporter off, as its port is shared),
  ``manage.py rqworker --job-class django_tasks_rq.Job`` (rq's forking worker, the job class
  the backend requires) and ``manage.py db_worker`` (polling every second when idle), ``N``
  independent processes for the peers. From the first completed task to the last: tasks/s,
  the CPU of every process of the system and their children per task, and Redis' CPU per task.

Beside them, not a peer: ``plain``, the same bodies as plain forkq jobs (``@forkq.job``,
``benchtasks.jobs``) in the same Django worker; the table shows a task's worker CPU over a
plain job's. ``--rq-tasks`` gives rq's worker, which forks a process a task, fewer tasks.

Each figure is the median of ``--runs`` runs with the min–max beside it; a ratio is the median
of the per-run ratios of forkq to the best peer of that run (rates: forkq / best; costs: best
/ forkq), so > 1 favours forkq. The JSON keeps every run's raw figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SITE = os.path.join(HERE, "django_site")
sys.path[:0] = [ROOT, HERE]

import forkq  # noqa: E402

from harness import Group, Server, server_cpu_seconds, wait_until  # noqa: E402
from report import spread  # noqa: E402

#: system → (its label, the packages it needs); ``plain`` is no peer: the same bodies as plain
#: forkq jobs (``benchtasks.jobs``), what a Django task costs above
SYSTEMS = {"forkq": ("forkq", ()),
           "plain": ("plain forkq job", ()),
           "rq": ("django-tasks-rq", ("django_tasks_rq", "django_rq", "rq")),
           "db": ("django-tasks-db", ("django_tasks_db",))}
BODIES = ("incr", "orm")
COUNTER = "bench:counter"
#: seconds a system gets to take its first task (Django boots slowly on a busy machine)
START_TIMEOUT = 120.0


def available(systems: list[str]) -> tuple[list[str], list[str]]:
    """The systems whose packages are installed, and why each other one is left out."""
    kept, skipped = [], []
    for system in systems:
        missing = [name for name in SYSTEMS[system][1] if find_spec(name) is None]
        if missing:
            skipped.append(f"{SYSTEMS[system][0]}: not installed ({', '.join(missing)}); "
                           f"pip install -e '.[bench]'")
        else:
            kept.append(system)
    return kept, skipped


def environment(server: Server, system: str, db: str) -> dict:
    backend = "forkq" if system == "plain" else system
    return dict(os.environ, DJANGO_SETTINGS_MODULE="benchsite.settings",
                BENCH_DJANGO_BACKEND=backend, BENCH_REDIS_URL=server.url,
                REDIS_URL=server.url, BENCH_DB=db, PYTHONPATH=os.pathsep.join([ROOT, SITE]))


def migrated_template(server: Server, workdir: str) -> str:
    """A migrated database in WAL mode, copied for every measurement."""
    path = os.path.join(workdir, "template.sqlite3")
    subprocess.run([sys.executable, os.path.join(SITE, "manage.py"), "migrate", "-v", "0"],
                   env=environment(server, "forkq", path), check=True, cwd=workdir)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    return path


def start_workers(system: str, processes: int, env: dict, workdir: str,
                  concurrency: int | None = None) -> Group:
    manage = [sys.executable, os.path.join(SITE, "manage.py")]
    if system in ("forkq", "plain"):
        config = {"redis_url": env["BENCH_REDIS_URL"], "processes": processes,
                  "require": ["benchtasks.jobs"],
                  "logfile": os.path.join(workdir, "forkq-worker.log"),
                  "metrics": {"port": None}, "data_dir": os.path.join(workdir, "data")}
        if concurrency is not None:
            config["concurrency"] = concurrency
        path = os.path.join(workdir, "forkq.yml")
        with open(path, "w") as handle:
            json.dump(config, handle)  # JSON is YAML
        return Group(f"forkq-{processes}", [[sys.executable, "-m", "forkq.cli", "start", "-c",
                                             path]], env, workdir)
    command = {"rq": manage + ["rqworker", "--job-class", "django_tasks_rq.Job", "default"],
               "db": manage + ["db_worker"]}[system]
    return Group(f"{system}-{processes}", [command] * processes, env, workdir)


class Completed:
    """How many tasks have run: the ``incr`` counter in Redis, or the rows in SQLite."""

    def __init__(self, body: str, server: Server, db: str) -> None:
        self.body, self.client = body, server.client
        self.connection = sqlite3.connect(db, timeout=30) if body == "orm" else None
        #: seconds between polls: a SQLite count is a read transaction beside the writers
        self.interval = 0.02 if body == "orm" else 0.005

    def __call__(self) -> int:
        if self.connection is None:
            return int(self.client.get(COUNTER) or 0)
        return self.connection.execute("SELECT COUNT(*) FROM benchtasks_row").fetchone()[0]

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def drain(group: Group, completed: Completed, server: Server, tasks: int) -> dict:
    """From the first completed task to the last; when all of them ran before the first look
    (a handful of tasks), from the start of the workers instead, start-up included."""
    launched = time.perf_counter()

    def started() -> bool:
        group.check_alive()
        return completed() >= 1

    wait_until(started, timeout=START_TIMEOUT, interval=completed.interval,
               what=f"{group.name}: first task")
    first, began = completed(), time.perf_counter()
    cpu, redis_cpu = group.cpu_seconds(), server_cpu_seconds(server.client)
    if first >= tasks:
        first, began, cpu = 0, launched, 0.0
    wait_until(lambda: completed() >= tasks, interval=completed.interval,
               what=f"{group.name}: all {tasks} tasks")
    elapsed = time.perf_counter() - began
    done = tasks - first
    return {"rate": done / elapsed, "cpu_us": (group.cpu_seconds() - cpu) / done * 1e6,
            "redis_us": (server_cpu_seconds(server.client) - redis_cpu) / done * 1e6}


def measure(server: Server, system: str, processes: int, body: str, tasks: int,
            workdir: str, template: str, concurrency: int | None = None) -> dict:
    server.client.flushall()
    db = os.path.join(workdir, "bench.sqlite3")
    shutil.copyfile(template, db)
    env = environment(server, system, db)
    sent = subprocess.run([sys.executable, os.path.join(SITE, "enqueue.py"), system, body,
                           str(tasks)], env=env, cwd=workdir, check=True, capture_output=True,
                          text=True)
    enqueue = json.loads(sent.stdout.strip().splitlines()[-1])
    group = start_workers(system, processes, env, workdir, concurrency)
    completed = Completed(body, server, db)
    try:
        figures = drain(group, completed, server, tasks)
    finally:
        completed.close()
        stop(group)
    return {**figures, "enqueue_rate": enqueue["rate"], "enqueue_cpu_us": enqueue["cpu_us"]}


def stop(group: Group) -> None:
    """TERM the workers; a second TERM after ``GRACE`` seconds (rq's and db_worker's way to
    stop at once: a warm shutdown of rq's worker sometimes waits out its job monitoring
    interval, 30 s); then the harness's stop, which kills what is left."""
    for process in group.processes:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline and any(p.poll() is None for p in group.processes):
        time.sleep(0.05)
    for process in group.processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    group.stop()


#: seconds the workers get to stop after the first TERM before the second
GRACE = 2.0
#: (figure, field, kind, whether higher is better)
FIGURES = [("drain, tasks/s", "rate", "rate", True),
           ("worker CPU per task", "cpu_us", "us", False),
           ("Redis CPU per task (drain)", "redis_us", "us", False),
           ("enqueue, tasks/s (one at a time)", "enqueue_rate", "rate", True),
           ("enqueue CPU per task", "enqueue_cpu_us", "us", False)]


def ratios(runs: list[dict], case: str, peers: list[str], field: str, higher: bool) -> list:
    """Per run, forkq against the best peer of that run (> 1 favours forkq)."""
    found = []
    for run in runs:
        ours = run[f"forkq-{case}"][field]
        theirs = [run[f"{peer}-{case}"][field] for peer in peers]
        best = max(theirs) if higher else min(theirs)
        found.append(over(ours, best) if higher else over(best, ours))
    return found


def over(numerator: float, denominator: float) -> float:
    """A ratio; NaN where a handful of tasks left a CPU time below the clock's tick (0)."""
    return numerator / denominator if denominator else float("nan")


def table(runs: list[dict], systems: list[str], processes: list[int], bodies: list[str]) -> str:
    peers = [system for system in systems if system not in ("forkq", "plain")]
    if "forkq" not in systems:
        peers = []  # no ratio to show
    lines = ["| body, processes | figure | " + " | ".join(SYSTEMS[s][0] for s in systems)
             + " | forkq / best peer |", "| --- " * (len(systems) + 3) + "|"]
    for body in bodies:
        for count in processes:
            case = f"{body}-{count}"
            for figure, field, kind, higher in FIGURES:
                cells = [spread([run[f"{system}-{case}"][field] for run in runs], kind)
                         for system in systems]
                ratio = (spread(ratios(runs, case, peers, field, higher), "ratio")
                         if peers and field != "redis_us" else "–")
                lines.append(f"| {body}, {count} | {figure} | " + " | ".join(cells)
                             + f" | {ratio} |")
            if {"forkq", "plain"} <= set(systems):
                above = [over(run[f"forkq-{case}"]["cpu_us"], run[f"plain-{case}"]["cpu_us"])
                         for run in runs]
                lines.append(f"| {body}, {count} | a task's worker CPU / a plain job's | "
                             + " | ".join(spread(above, "ratio") if system == "forkq" else "–"
                                          for system in systems) + " | – |")
    return "\n".join(lines)


def header(args: argparse.Namespace, systems: list[str]) -> dict:
    import django

    return {"forkq": forkq.__version__, "django": django.__version__,
            "python": sys.version.split()[0], "tasks": args.tasks, "rq_tasks": args.rq_tasks,
            "runs": args.runs, "concurrency": args.concurrency,
            "systems": systems, "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rq-tasks", type=int, default=None,
                        help="tasks a drain for django-tasks-rq, whose worker forks a process "
                             "a task: a few hundred measure it (default: --tasks)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--bodies", nargs="+", choices=BODIES, default=list(BODIES))
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS),
                        help="forkq, plain forkq jobs, the peers (default: all)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="threads a forkq worker process (default: forkq's, 10)")
    parser.add_argument("--json", default="compare_django.json",
                        help="where to keep every run's figures (default: %(default)s)")
    args = parser.parse_args(argv)
    args.rq_tasks = args.rq_tasks or args.tasks
    if min(args.tasks, args.rq_tasks) < 2:
        parser.error("--tasks: give at least 2 (the first one opens the connections)")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    systems, skipped = available(args.systems)
    for reason in skipped:
        print(f"skipped {reason}")
    meta = header(args, systems)
    print(f"forkq {meta['forkq']}, Django {meta['django']}, Python {meta['python']}, "
          f"{args.tasks:,} tasks a drain ({args.rq_tasks:,} for rq), median of {args.runs} "
          f"run(s), {meta['cpus']} CPUs, load average {meta['load_before']:.2f}", flush=True)
    server, runs = Server(), []
    try:
        with tempfile.TemporaryDirectory(prefix="forkq-bench-django-") as workdir:
            template = migrated_template(server, workdir)
            for _ in range(args.runs):
                runs.append({f"{system}-{body}-{count}": measure(
                    server, system, count, body, args.rq_tasks if system == "rq" else args.tasks,
                    workdir, template, args.concurrency)
                    for body in args.bodies for count in args.processes for system in systems})
    finally:
        server.stop()
    meta["load_after"] = os.getloadavg()[0]
    print(table(runs, systems, args.processes, args.bodies))
    print(f"load average {meta['load_after']:.2f} after")
    record = {"meta": meta, "skipped": skipped, "runs": runs}
    with open(args.json, "w") as handle:
        json.dump(record, handle, indent=1)
    return record


if __name__ == "__main__":
    main()
