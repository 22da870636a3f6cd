"""Cost as the work grows: forkq beside Ruby Sidekiq 6.4 as queues deepen, as queues multiply
and as the schedule and retry sets fill; Redis memory per job; web UI page times on a big Redis.

    python bench/scale.py                                  # every section, median of 3 runs
    python bench/scale.py --sections depth,queues --runs 1
    python bench/scale.py --tiny                           # small sizes: that it still runs
    python bench/scale.py --json scale.json                # also keep every run's raw figures

Needs what ``compare.py`` needs (the project's venv; Debian's ``ruby-sidekiq`` for Sidekiq's
columns; ``--no-sidekiq`` leaves them out). Not a test: nothing here asserts on speed.

One private redis-server on loopback TCP serves every section. Both systems run one process of
10 threads at their default settings, logging at INFO to a file; the Ruby job body uses a
pool of connections, as the Python one does (``compare_jobs.rb``). Sections:

- ``depth``: ``--sample`` jobs drained from a queue holding ``--depths`` jobs (1k, 100k, 1M):
  the queue is filled, set aside, and renamed into place once the system idles; the clock
  runs from the first completion to the ``--sample``-th (``compare.drain_once``). Only a
  fixed sample drains (2 shared cores would take minutes per million); the rest stays queued,
  so every drain takes its jobs from a queue that deep.
- ``queues``: ``--sample`` jobs spread evenly over ``--queue-counts`` queues (1, 100, 1,000),
  strict (names in order) and weighted (each queue weight 1), released in one transaction.
- ``sets``: ``--set-sizes`` entries (10k, 100k, 1M) in each of ``schedule`` and ``retry``, none
  due (0, the default's first size, is the baseline). Worker CPU (every thread of the process:
  the poller, the idle fetchers, the heartbeat) and Redis CPU per second over
  ``--idle-seconds`` while nothing is due; then ``--due`` entries made due at once (half in each set, for a queue no
  thread listens to), and the CPU per job moved until every one is in its queue.
- ``memory``: Redis ``used_memory`` per job for ``--depths`` jobs queued (forkq's bulk push;
  Sidekiq's ``push_bulk``), and per entry scheduled (forkq's payload).
- ``web``: forkq's web UI pages and the Prometheus scrape, with ``--web-queue`` jobs (1M) in a
  queue, ``--web-dead`` (100k) in the dead set and ``--queue-counts``' largest number of
  queues; each page requested in-process (the WSGI app) ``--runs`` × 3 times.

Rates: forkq/Sidekiq; costs: Sidekiq/forkq (> 1 favours forkq); medians with min–max.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import sys
import tempfile
import time
import wsgiref.util

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import forkq  # noqa: E402
from forkq import payload as payloads  # noqa: E402

import compare  # noqa: E402
import report  # noqa: E402
import systems  # noqa: E402
from harness import Server, server_cpu_seconds, wait_until  # noqa: E402

SECTIONS = ("depth", "queues", "sets", "memory", "web")
STAGED = "bench:staged"
#: jobs per bulk push round trip when filling
CHUNK = 10_000
#: the queue the due entries of ``sets`` go to: no thread of either system listens to it
PARKED = "parked"
#: seconds ahead the not-due entries of ``sets`` are scheduled
LATER = 86_400.0
PAGES = ("/", "/stats", "/queues", "/queues/default", "/queues/default?page=40000",
         "/morgue", "/morgue?page=4000", "/retries", "/metrics")

compare_jobs = None  # imported once the server's URL is in the environment


def counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def fill_queue(queue: str, count: int, total: int) -> None:
    """``count`` real jobs (``BenchIncr(total)``) bulk-pushed to ``queue``."""
    compare_jobs.BenchIncr.set(queue=queue).perform_bulk(itertools.repeat([total], count),
                                                         batch_size=CHUNK)


def entry_maker(queue: str, failed: bool):
    """A function of a jid giving a set entry's JSON text: a real BenchIncr payload, with the
    error fields of a failed job when ``failed``."""
    fields = {"class": "BenchIncr", "args": [1], "jid": "JID", "queue": queue, "retry": True,
              "created_at": time.time()}
    if failed:
        fields.update(error_class="RuntimeError", error_message="boom", retry_count=3,
                      failed_at=time.time(), retried_at=time.time())
    before, after = payloads.dumps(fields).split("JID")
    return lambda jid: f"{before}{jid}{after}"


def fill_set(client, key: str, count: int, score, queue: str = "default",
             failed: bool = False) -> None:
    """``count`` entries in the sorted set ``key``, entry ``i`` scored ``score(i)``."""
    make = entry_maker(queue, failed)
    for start in range(0, count, CHUNK):
        pipe = client.pipeline(transaction=False)
        pipe.zadd(key, {make(f"{key[-4:]}{index:020x}"): score(index)
                        for index in range(start, min(count, start + CHUNK))})
        pipe.execute()


def forkq_start(url, queues=("default",)):
    return lambda workdir: systems.start_forkq(url, 1, "reliable", workdir, queues=queues)


def sidekiq_start(url, queues=("default",)):
    return lambda workdir: systems.start_sidekiq(url, 1, workdir, queues=queues)


def starters(server, args, queues=("default",)) -> dict:
    found = {"forkq": forkq_start(server.url, queues)}
    if not args.no_sidekiq:
        found["sidekiq"] = sidekiq_start(server.url, queues)
    return found


def reset_marks(client) -> None:
    client.delete(compare_jobs.COUNTER, compare_jobs.MARKS)


# --- depth -----------------------------------------------------------------------------------

def depth_section(server, args) -> dict:
    client, runs = server.client, {}
    for depth in args.depths:
        sample = min(depth, args.sample)
        client.flushall()
        for _ in range(args.runs):
            for system, start in starters(server, args).items():
                fill_queue("default", depth - client.llen(compare.QUEUE), sample)
                reset_marks(client)
                client.rename(compare.QUEUE, STAGED)
                result = compare.drain_once(server, start, 1, sample,
                                            lambda: client.rename(STAGED, compare.QUEUE))
                runs.setdefault(f"{system}-{depth}", []).append(result)
    return runs


def depth_rows(runs: dict, args) -> list[dict]:
    rows = []
    for depth in args.depths:
        label = f"{depth:,} queued"
        rows += [_row(f"{label}: drain, jobs/s", runs, depth, "rate", "rate", True),
                 _row(f"{label}: worker CPU per job", runs, depth, "cpu_us", "us"),
                 _row(f"{label}: Redis CPU per job", runs, depth, "redis_cpu_us", "us")]
    return rows


def flat_row(figure: str, sidekiq: list[float] | None, forkq: list[float], kind: str,
             higher: bool = False, target: str = "–") -> dict:
    """One figure of this script's tables: both sides' values and the per-run ratios."""
    return {"figure": figure, "kind": kind, **report.cell(sidekiq, forkq, higher, target)}


def _row(figure: str, runs: dict, case, field: str, kind: str, higher=False) -> dict:
    """forkq's and Sidekiq's ``field`` in ``case``; no ratio where a value is 0 (a cost too
    small for the clock to see)."""
    forkq_values = [r[field] for r in runs[f"forkq-{case}"]]
    sidekiq = [r[field] for r in runs.get(f"sidekiq-{case}", [])] or None
    comparable = sidekiq is not None and all(sidekiq) and all(forkq_values)
    entry = flat_row(figure, sidekiq if comparable else None, forkq_values, kind, higher)
    entry["sidekiq"] = sidekiq
    return entry


# --- queues ----------------------------------------------------------------------------------

def queues_section(server, args) -> dict:
    client, runs = server.client, {}
    for count in args.queue_counts:
        names = [f"q{index}" for index in range(count)]
        per = max(1, args.sample // count)
        for mode in ("strict", "weighted"):
            config = names if mode == "strict" else [[name, 1] for name in names]
            for _ in range(args.runs):
                for system, start in starters(server, args, config).items():
                    client.flushall()
                    for name in names:
                        fill_queue(name, per, per * count)
                    pipe = client.pipeline(transaction=True)
                    for name in names:
                        pipe.rename(f"queue:{name}", f"{STAGED}:{name}")
                    pipe.execute()

                    def release(names=names) -> None:
                        pipe = client.pipeline(transaction=True)
                        for name in names:
                            pipe.rename(f"{STAGED}:{name}", f"queue:{name}")
                        pipe.execute()

                    result = compare.drain_once(server, start, 1, per * count, release)
                    runs.setdefault(f"{system}-{count}-{mode}", []).append(result)
    return runs


def queues_rows(runs: dict, args) -> list[dict]:
    rows = []
    for count in args.queue_counts:
        for mode in ("strict", "weighted"):
            label, case = f"{count:,} queues, {mode}", f"{count}-{mode}"
            rows += [_row(f"{label}: drain, jobs/s", runs, case, "rate", "rate", True),
                     _row(f"{label}: worker CPU per job", runs, case, "cpu_us", "us"),
                     _row(f"{label}: Redis CPU per job", runs, case, "redis_cpu_us", "us")]
    return rows


# --- sets ------------------------------------------------------------------------------------

def sets_section(server, args) -> dict:
    client, runs = server.client, {}
    for size in args.set_sizes:
        for _ in range(args.runs):
            for system, start in starters(server, args).items():
                client.flushall()
                later = time.time() + LATER
                for key in ("schedule", "retry"):
                    fill_set(client, key, size, lambda i: later + i, failed=key == "retry")
                runs.setdefault(f"{system}-{size}", []).append(
                    sets_once(server, start, args))
    return runs


def sets_once(server, start, args) -> dict:
    """Idle costs per second with nothing due, then the costs per job of moving ``--due``."""
    client = server.client
    with tempfile.TemporaryDirectory(prefix="forkq-scale-") as workdir:
        group = start(workdir)
        try:
            compare.start_when_blocked(client, group, systems.blocked(1))
            time.sleep(1.0)  # start-up work (first heartbeat, recovery) done
            idle = _window(client, group, lambda: time.sleep(args.idle_seconds))
            now, half = time.time(), args.due // 2
            pipe = client.pipeline(transaction=True)
            for key, count in (("schedule", half), ("retry", args.due - half)):
                make = entry_maker(PARKED, key == "retry")
                pipe.zadd(key, {make(f"due{key}{i:016x}"): now - 1 for i in range(count)})
            pipe.execute()

            def moved() -> None:
                wait_until(lambda: group.check_alive() or client.llen(f"queue:{PARKED}")
                           >= args.due, timeout=300, interval=0.05, what="due jobs moved")

            due = _window(client, group, moved)
        finally:
            group.stop()
    return {"idle_cpu_ms_s": idle["cpu"] / idle["seconds"] * 1e3,
            "idle_redis_ms_s": idle["redis"] / idle["seconds"] * 1e3,
            "move_cpu_us": due["cpu"] / args.due * 1e6,
            "move_redis_us": due["redis"] / args.due * 1e6}


def _window(client, group, action) -> dict:
    """CPU seconds of the system and of Redis, and wall seconds, while ``action()`` runs."""
    started, cpu, redis_cpu = time.monotonic(), group.cpu_seconds(), server_cpu_seconds(client)
    action()
    return {"seconds": time.monotonic() - started, "cpu": group.cpu_seconds() - cpu,
            "redis": server_cpu_seconds(client) - redis_cpu}


def sets_rows(runs: dict, args) -> list[dict]:
    rows = []
    for size in args.set_sizes:
        label = f"{size:,} in schedule and in retry"
        rows += [_row(f"{label}: nothing due, worker CPU ms/s", runs, size, "idle_cpu_ms_s", "ms"),
                 _row(f"{label}: nothing due, Redis CPU ms/s", runs, size, "idle_redis_ms_s",
                      "ms"),
                 _row(f"{label}: {args.due:,} due, worker CPU per job moved", runs, size,
                      "move_cpu_us", "us"),
                 _row(f"{label}: {args.due:,} due, Redis CPU per job moved", runs, size,
                      "move_redis_us", "us")]
    return rows


# --- memory ----------------------------------------------------------------------------------

def memory_section(server, args) -> dict:
    client, runs = server.client, {}
    for count in args.depths:
        for _ in range(args.runs):
            cases = {"forkq-queued": lambda: fill_queue("default", count, count),
                     "forkq-scheduled": lambda: fill_set(client, "schedule", count,
                                                         lambda i: time.time() + LATER + i)}
            if not args.no_sidekiq:
                cases["sidekiq-queued"] = lambda: compare.sidekiq_enqueue(server, count - 1, 1)
            for case, fill in cases.items():
                client.flushall()
                before = client.info("memory")["used_memory"]
                fill()
                used = client.info("memory")["used_memory"] - before
                runs.setdefault(f"{case}-{count}", []).append({"bytes": used / count})
    return runs


def memory_rows(runs: dict, args) -> list[dict]:
    rows = []
    for count in args.depths:
        rows.append(_row(f"{count:,} queued: Redis memory per job, bytes", runs,
                         f"queued-{count}", "bytes", "rate"))
        rows.append(flat_row(f"{count:,} scheduled: Redis memory per entry, bytes", None,
                             [r["bytes"] for r in runs[f"forkq-scheduled-{count}"]], "rate"))
    return rows


# --- web -------------------------------------------------------------------------------------

def web_section(server, args) -> dict:
    from prometheus_client.registry import CollectorRegistry
    from prometheus_client import generate_latest

    from forkq import config as forkq_config
    from forkq.metrics.collector import Collector
    from forkq.web.app import App

    client = server.client
    client.flushall()
    fill_queue("default", args.web_queue, 1)
    for index in range(max(args.queue_counts) - 1):
        fill_queue(f"q{index}", 1, 1)
    now = time.time()
    fill_set(client, "dead", args.web_dead, lambda i: now - i, failed=True)
    with tempfile.TemporaryDirectory(prefix="forkq-scale-") as data:
        config = forkq_config.from_mapping({"redis_url": server.url, "data_dir": data}, "bench")
        app = App(config, environ={})
        registry = CollectorRegistry()
        registry.register(Collector(config, None))
        timed = {page: lambda page=page: _get(app, page) for page in PAGES}
        timed["exporter /metrics"] = lambda: generate_latest(registry)
        runs = {}
        for _ in range(args.runs * 3):
            for page, request in timed.items():
                started = time.perf_counter()
                request()
                runs.setdefault(page, []).append(
                    {"ms": (time.perf_counter() - started) * 1e3})
    return runs


def _get(app, path: str) -> bytes:
    """One GET through the WSGI app, as from localhost; the body, or an error."""
    path, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query,
               "wsgi.input": io.BytesIO(b""), "HTTP_HOST": "localhost:7433"}
    wsgiref.util.setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda code, headers: status.append(code)))
    if not status[0].startswith("200"):
        raise RuntimeError(f"GET {path}?{query}: {status[0]}")
    return body


def web_rows(runs: dict, args) -> list[dict]:
    names = {"/": "dashboard", "/stats": "dashboard's live numbers (JSON)",
             "/queues": f"queues list ({max(args.queue_counts):,} queues)",
             "/queues/default": "queue page, first page",
             "/queues/default?page=40000": "queue page, page 40,000",
             "/morgue": "dead page, first page", "/morgue?page=4000": "dead page, page 4,000",
             "/retries": "retries page", "/metrics": "job metrics page",
             "exporter /metrics": "Prometheus scrape"}
    return [flat_row(f"{names[page]} ({page})", None, [r["ms"] for r in runs[page]], "ms",
                     target="< 1000 ms") for page in runs]


# --- the run ---------------------------------------------------------------------------------

RUNNERS = {"depth": (depth_section, depth_rows), "queues": (queues_section, queues_rows),
           "sets": (sets_section, sets_rows), "memory": (memory_section, memory_rows),
           "web": (web_section, web_rows)}
TITLES = {"depth": "Drain as the queue deepens", "queues": "Drain as queues multiply",
          "sets": "The schedule and retry sets as they fill",
          "memory": "Redis memory per job", "web": "Web UI page times on a big Redis"}


def table(title: str, rows: list[dict]) -> str:
    lines = [f"### {title}", "", "| figure | Sidekiq | forkq | ratio (> 1: forkq better) |",
             "| --- | --- | --- | --- |"]
    for entry in rows:
        sidekiq = report.spread(entry["sidekiq"], entry["kind"]) if entry["sidekiq"] else "–"
        ratio = report.spread(entry["ratio"], "ratio") if entry["ratio"] else "–"
        lines.append(f"| {entry['figure']} | {sidekiq} | "
                     f"{report.spread(entry['forkq'], entry['kind'])} | {ratio} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sample", type=int, default=20_000, help="jobs drained per run")
    parser.add_argument("--depths", type=counts, default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--queue-counts", type=counts, default=[1, 100, 1_000])
    parser.add_argument("--set-sizes", type=counts, default=[0, 10_000, 100_000, 1_000_000])
    parser.add_argument("--due", type=int, default=10_000, help="entries made due in 'sets'")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--web-queue", type=int, default=1_000_000)
    parser.add_argument("--web-dead", type=int, default=100_000)
    parser.add_argument("--no-sidekiq", action="store_true", help="forkq's columns only")
    parser.add_argument("--tiny", action="store_true",
                        help="a thousand jobs or so and one run: checks that it runs")
    parser.add_argument("--json", metavar="PATH", help="also write every run's figures here")
    args = parser.parse_args(argv)
    args.sections = [name for name in args.sections.split(",") if name]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(SECTIONS)}")
    if args.tiny:
        # 1,000 jobs a drain: with fewer, a slow harness may see them all done at its first
        # sample, and a drain needs jobs left after it
        args.runs, args.sample, args.due, args.idle_seconds = 1, 1000, 100, 0.5
        args.depths, args.queue_counts, args.set_sizes = [1500], [3], [300]
        args.web_queue, args.web_dead = 300, 100
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    ruby = None if args.no_sidekiq else compare.ruby_versions()
    server = Server()
    os.environ["BENCH_REDIS_URL"] = server.url
    os.environ["BENCH_RUBY_CLIENT"] = "pool"
    forkq.configure(redis_url=server.url)
    global compare_jobs
    import compare_jobs
    compare.compare_jobs = compare_jobs
    meta = {"forkq": forkq.__version__, "python": sys.version.split()[0],
            "sidekiq": ruby[1] if ruby else None, "cpus": os.cpu_count(),
            "redis_server": server.client.info("server")["redis_version"],
            "load_before": os.getloadavg()[0], "args": {k: v for k, v in vars(args).items()}}
    print(f"forkq {meta['forkq']} beside Sidekiq {meta['sidekiq'] or '(left out)'}, "
          f"redis-server {meta['redis_server']}, {meta['cpus']} CPUs, median of {args.runs} "
          f"run(s) (min–max); load average {meta['load_before']:.2f} at the start")
    results = {}
    try:
        for name in args.sections:
            measure, rows = RUNNERS[name]
            runs = measure(server, args)
            results[name] = {"runs": runs, "table": rows(runs, args)}
            print(f"\n{table(TITLES[name], results[name]['table'])}\n"
                  f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    finally:
        server.stop()
    meta["load_after"] = os.getloadavg()[0]
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"meta": meta, "sections": results}, handle, indent=1)


if __name__ == "__main__":
    main()
