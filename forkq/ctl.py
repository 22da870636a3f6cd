"""The ``forkqctl`` command: stop, quiet or dump a running master; show what Redis knows.

``stop``, ``quiet`` and ``dump`` signal the master named by a pidfile (``--pidfile``, or the
``pidfile`` key of the config), after checking that the pid still runs forkq. ``status`` reads
Redis through ``forkq.api``. An error prints one line, ``forkqctl: <message>``, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from . import config as config_module
from .errors import ForkqError
from .pidfile import is_forkq_process, read_pidfile

#: seconds ``stop`` waits beyond the timeout before it SIGKILLs the master
STOP_MARGIN = 10.0
#: seconds between checks that the master has exited
POLL = 0.1


class CtlError(Exception):
    """A condition forkqctl reports in one line."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CtlError, ForkqError) as exc:
        print(f"forkqctl: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forkqctl", description="Control a running forkq.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    stop = commands.add_parser("stop", help="quiet, then stop the master; SIGKILL it if it "
                               "outlives the timeout by 10 s")
    stop.add_argument("--timeout", type=float, help="seconds jobs get to finish (default: the "
                      "config's timeout)")
    for name, run, text in (("stop", run_stop, None),
                            ("quiet", run_quiet, "stop fetching new jobs (TSTP)"),
                            ("dump", run_dump, "log every thread's stack in every child (TTIN)"),
                            ("status", run_status, "processes, queues and sets, from Redis")):
        command = stop if name == "stop" else commands.add_parser(name, help=text)
        command.add_argument("-c", "--config", help="path to the YAML config (default: "
                             "./forkq.yml when it exists)")
        if name == "status":
            command.add_argument("--json", action="store_true", help="print JSON")
        else:
            command.add_argument("--pidfile", help="the master's pidfile (default: the config's)")
        command.set_defaults(run=run)
    return parser


def load_config(args: argparse.Namespace):
    from .cli import config_path

    return config_module.load(config_path(args))


# --- signalling the master

def master_pid(args: argparse.Namespace, config) -> int:
    path = args.pidfile or config.pidfile
    if not path:
        raise CtlError("no pidfile: pass --pidfile, or -c with a config that sets 'pidfile'")
    if not os.path.exists(path):
        raise CtlError(f"pidfile {path} not found (is forkq running?)")
    pid = read_pidfile(path)
    if pid is None:
        raise CtlError(f"pidfile {path} does not hold a pid")
    if not running(pid):
        raise CtlError(f"pid {pid} from {path} is not running (stale pidfile)")
    if not is_forkq_process(pid):
        raise CtlError(f"pid {pid} from {path} is not a forkq process (stale pidfile, pid reused)")
    return pid


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited master whose parent has not reaped it yet)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


def run_stop(args: argparse.Namespace) -> int:
    config = load_config(args)
    pid = master_pid(args, config)
    timeout = args.timeout if args.timeout is not None else config.timeout
    started = time.monotonic()
    os.kill(pid, signal.SIGTSTP)
    os.kill(pid, signal.SIGTERM)
    print(f"forkqctl: sent TSTP and TERM to forkq master {pid}; waiting up to "
          f"{timeout + STOP_MARGIN:.0f} s")
    if wait_gone(pid, timeout + STOP_MARGIN):
        print(f"forkqctl: forkq master {pid} stopped in {time.monotonic() - started:.1f} s")
        return 0
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid, STOP_MARGIN)
    print(f"forkqctl: forkq master {pid} did not stop within {timeout + STOP_MARGIN:.0f} s: "
          f"sent SIGKILL; its children stop by themselves and requeue their jobs")
    return 1


def run_quiet(args: argparse.Namespace) -> int:
    pid = master_pid(args, load_config(args))
    os.kill(pid, signal.SIGTSTP)
    print(f"forkqctl: sent TSTP to forkq master {pid}: no new jobs will start")
    return 0


def run_dump(args: argparse.Namespace) -> int:
    pid = master_pid(args, load_config(args))
    os.kill(pid, signal.SIGTTIN)
    print(f"forkqctl: sent TTIN to forkq master {pid}: every child logs its threads' stacks")
    return 0


# --- status

def run_status(args: argparse.Namespace) -> int:
    import redis

    from .api import Api

    config = load_config(args)
    try:
        report = collect(Api.from_config(config))
    except redis.RedisError as exc:
        raise CtlError(f"cannot reach Redis at {redis_location(config)}: {exc}") from None
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def redis_location(config) -> str:
    """Where status looked, without the password a URL may carry."""
    if not config.redis_url:
        return f"the embedded server under {config.data_dir}"
    from urllib.parse import urlsplit

    url = urlsplit(config.redis_url)
    return url._replace(netloc=url.netloc.rpartition("@")[2]).geturl()


def collect(api) -> dict:
    now = time.time()
    processes = [{"identity": p.identity, "tag": p.tag, "pid": p.pid, "busy": p.busy,
                  "concurrency": p.concurrency, "rss_kb": p.rss_kb,
                  "beat_age": round(now - p.beat, 1) if p.beat else None, "quiet": p.quiet}
                 for p in api.processes()]
    queues = [{"name": q.name, "size": q.size, "latency": round(q.latency, 3)}
              for q in api.all_queues()]
    return {"processes": processes, "queues": queues, "retries": api.retries.size,
            "scheduled": api.scheduled.size, "dead": api.dead.size}


def render(report: dict) -> str:
    lines = [f"processes: {len(report['processes'])}"]
    for p in report["processes"]:
        beat = "?" if p["beat_age"] is None else f"{p['beat_age']:.1f} s ago"
        lines.append(f"  {p['identity']}  tag={p['tag'] or '-'} pid={p['pid']} "
                     f"busy={p['busy']}/{p['concurrency']} rss={p['rss_kb'] / 1024:.1f} MB "
                     f"beat={beat}{' QUIET' if p['quiet'] else ''}")
    lines.append(f"queues: {len(report['queues'])}")
    for q in report["queues"]:
        lines.append(f"  {q['name']}  size={q['size']} latency={q['latency']:.2f} s")
    lines.append(f"retries={report['retries']} scheduled={report['scheduled']} "
                 f"dead={report['dead']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
