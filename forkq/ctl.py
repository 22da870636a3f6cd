"""The ``forkqctl`` command: stop, quiet, reload or dump a running master; show what Redis knows.

``stop``, ``quiet``, ``reload`` and ``dump`` signal the master named by a pidfile:
``--pidfile``, else the config's ``pidfile``, else ``<data_dir>/master.pid``, which every master
writes (``data_dir`` is relative to the directory the master runs in, ``.forkq`` by default).
The pid is signalled only when its process is the one that wrote the file (same start time, runs
forkq): a stale pidfile whose pid now belongs to another process is refused, and the signal goes
through a pidfd, so the pid cannot be reused between the check and the signal.

``pause QUEUE`` / ``resume QUEUE`` and ``cancel JID`` write through ``forkq.api`` (what every
worker on that Redis obeys within about a second: ``flow/pause.py``, ``flow/cancel.py``).

``status`` reads Redis through ``forkq.api``: each process with the age of its last heartbeat,
the queues (``PAUSED`` marks a paused one, ``BAD RECORD`` one whose key is not a list), and
totals; the master's pid when its pidfile is found; the periodic leader (identity and its
master's pid) and each periodic entry's next and last run (tick, jid). Everything that came from
Redis is printed with control characters escaped. An error prints one line, ``forkqctl:
<message>``, and exits 1; output cut short by its reader (``| head``) ends quietly with exit
code 141, as a process killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import signal
import sys
import time

from . import config as config_module
from .errors import ForkqError
from .log import escape_controls
from .supervisor.pidfile import (PidfileError, PidfileMissing, PidRecord, default_pidfile, read_record,
                      start_time, wrote)

#: seconds ``stop`` waits beyond the timeout before it SIGKILLs the master
STOP_MARGIN = 10.0


class CtlError(Exception):
    """A condition forkqctl reports in one line."""


def main(argv: list[str] | None = None) -> int:
    from .flags import closed_pipe, interrupted

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CtlError, ForkqError) as exc:
        print(f"forkqctl: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return interrupted("forkqctl")
    except BrokenPipeError:
        return closed_pipe()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forkqctl", description="Control a running forkq.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    stop = commands.add_parser("stop", help="quiet, then stop the master; SIGKILL it if it "
                               f"outlives the timeout by {STOP_MARGIN:.0f} s")
    stop.add_argument("--timeout", type=float, help="seconds forkqctl waits for the master, "
                      f"plus {STOP_MARGIN:.0f} s, before it sends SIGKILL (default: the config's "
                      "timeout); the master's jobs get the master's own configured timeout, "
                      "whatever this says")
    for name, run, text in (("stop", run_stop, None),
                            ("quiet", run_quiet, "stop fetching new jobs (TSTP)"),
                            ("dump", run_dump, "log every thread's stack in every child (TTIN)"),
                            ("reload", run_reload, "re-read the config and replace the children "
                             "one at a time, each stopped gracefully (HUP)"),
                            ("status", run_status, "processes, queues and totals, from Redis")):
        command = stop if name == "stop" else commands.add_parser(name, help=text)
        command.add_argument("-c", "--config", help="path to the YAML config (default: "
                             "$FORKQ_CONFIG when set, else ./forkq.yml when it exists)")
        if name == "status":
            command.add_argument("--json", action="store_true", help="print JSON")
        command.add_argument("--pidfile", help="the master's pidfile (default: the config's "
                             "pidfile, else <data_dir>/master.pid)")
        command.set_defaults(run=run)
    for name, run, text, target in (
            ("pause", run_pause, "stop every worker taking jobs from a queue (pushes go on)",
             "queue"),
            ("resume", run_resume, "let workers take jobs from a paused queue again", "queue"),
            ("cancel", run_cancel, "cancel a job: remove it, or interrupt it where it runs",
             "jid")):
        command = commands.add_parser(name, help=text)
        command.add_argument(target, help="the queue's name" if target == "queue" else
                             "the job's jid")
        command.add_argument("-c", "--config", help="path to the YAML config (default: "
                             "$FORKQ_CONFIG when set, else ./forkq.yml when it exists)")
        command.set_defaults(run=run)
    return parser


def load_config(args: argparse.Namespace):
    from .flags import config_path

    return config_module.load(config_path(args))


# --- finding and signalling the master

def pidfile_path(args: argparse.Namespace, config) -> str:
    return args.pidfile or config.pidfile or default_pidfile(config.data_dir)


class Master:
    """The running master a pidfile names, held by a pidfd once its identity is verified."""

    def __init__(self, record: PidRecord, fd: int | None) -> None:
        self.record = record
        self.pid = record.pid
        #: pidfd of the verified process; None where the kernel has no pidfd (before 5.3)
        self.fd = fd

    def __enter__(self) -> "Master":
        return self

    def __exit__(self, *exc_info) -> None:
        _close(self.fd)

    @classmethod
    def find(cls, path: str) -> "Master":
        try:
            record = read_record(path)
        except PidfileMissing as exc:
            raise CtlError(f"{exc} (is forkq running from this directory with this config?)"
                           ) from None
        except PidfileError as exc:
            raise CtlError(str(exc)) from None
        fd = _pidfd(record.pid)
        if start_time(record.pid) is None:
            _close(fd)
            raise CtlError(f"pid {record.pid} from {path} is not running (stale pidfile)")
        if not wrote(record):
            _close(fd)
            raise CtlError(f"pid {record.pid} from {path} is not the forkq master that wrote "
                           f"it (stale pidfile)")
        return cls(record, fd)

    def send(self, signum: int) -> None:
        try:
            if self.fd is None:
                os.kill(self.pid, signum)
            else:
                signal.pidfd_send_signal(self.fd, signum)
        except ProcessLookupError:
            raise CtlError(f"forkq master {self.pid} exited before it got "
                           f"{signal.Signals(signum).name}") from None
        except PermissionError:
            raise CtlError(f"not allowed to signal forkq master {self.pid}: run forkqctl as the "
                           f"user the master runs as") from None

    def kill(self) -> bool:
        """SIGKILL the master; False when it exited just before."""
        try:
            self.send(signal.SIGKILL)
        except CtlError:
            print(f"forkqctl: forkq master {self.pid} stopped")
            return False
        return True

    def wait_gone(self, seconds: float) -> bool:
        """Whether the master exited within ``seconds`` (a zombie counts as exited)."""
        deadline = time.monotonic() + seconds
        while wrote(self.record):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.fd is None:
                time.sleep(min(left, 0.1))
            else:
                select.select([self.fd], [], [], left)
        return True


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None  # gone (the checks that follow say so) or no pidfd on this kernel


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def find_master(args: argparse.Namespace, config) -> Master:
    return Master.find(pidfile_path(args, config))


def run_stop(args: argparse.Namespace) -> int:
    config = load_config(args)
    timeout = args.timeout if args.timeout is not None else config.timeout
    with find_master(args, config) as master:
        started = time.monotonic()
        master.send(signal.SIGTSTP)
        master.send(signal.SIGTERM)
        print(f"forkqctl: sent TSTP and TERM to forkq master {master.pid}; waiting up to "
              f"{timeout + STOP_MARGIN:.0f} s")
        if master.wait_gone(timeout + STOP_MARGIN):
            print(f"forkqctl: forkq master {master.pid} stopped in "
                  f"{time.monotonic() - started:.1f} s")
            return 0
        if not master.kill():
            return 0
        master.wait_gone(STOP_MARGIN)
    print(f"forkqctl: forkq master {master.pid} did not stop within "
          f"{timeout + STOP_MARGIN:.0f} s: sent SIGKILL; its children stop by themselves and "
          f"requeue their jobs")
    return 1


def signal_master(signum: int, effect: str):
    """A subcommand that sends ``signum`` to the master and says what follows."""
    def run(args: argparse.Namespace) -> int:
        with find_master(args, load_config(args)) as master:
            master.send(signum)
        print(f"forkqctl: sent {signal.Signals(signum).name[3:]} to forkq master {master.pid}: "
              f"{effect}")
        return 0
    return run


run_quiet = signal_master(signal.SIGTSTP, "no new jobs will start")
run_dump = signal_master(signal.SIGTTIN, "every child logs its threads' stacks")
run_reload = signal_master(signal.SIGHUP, "it re-reads its config and replaces its children "
                                          "one at a time")


# --- pause, resume, cancel: writes through forkq.api

def _api(args: argparse.Namespace):
    from .api import Api

    return Api.from_config(load_config(args))


def _redis_call(args: argparse.Namespace, call):
    import redis

    try:
        return call(_api(args))
    except redis.RedisError as exc:
        raise CtlError(f"cannot reach Redis: {exc}") from None


def run_pause(args: argparse.Namespace) -> int:
    changed = _redis_call(args, lambda api: api.queue(args.queue).pause())
    print(escape_controls(f"forkqctl: queue {args.queue} "
                          f"{'paused' if changed else 'was already paused'}: workers take no "
                          f"job from it within a second; running jobs finish"))
    return 0


def run_resume(args: argparse.Namespace) -> int:
    changed = _redis_call(args, lambda api: api.queue(args.queue).resume())
    print(escape_controls(f"forkqctl: queue {args.queue} "
                          f"{'resumed' if changed else 'was not paused'}"))
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    """Exit 1 when the job was found nowhere (finished, unknown, or expired)."""
    try:
        where = _redis_call(args, lambda api: api.cancel(args.jid))
    except TypeError as exc:
        raise CtlError(str(exc)) from None
    if where is None:
        print(escape_controls(f"forkqctl: job {args.jid} was found nowhere (finished or "
                              f"unknown); a copy fetched within the hour is dropped"))
        return 1
    what = ("interrupted within about a second, or dropped before it starts"
            if where == "running" else "removed")
    print(escape_controls(f"forkqctl: job {args.jid} was {where}: {what}"))
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
    report["master"] = master_report(pidfile_path(args, config))
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def redis_location(config) -> str:
    """Where status looked, without the passwords a URL may carry."""
    if not config.redis_url:
        return f"the embedded server under {config.data_dir}"
    from urllib.parse import urlsplit

    from .connection.urls import redact

    url = urlsplit(config.redis_url)
    return redact(url._replace(netloc=url.netloc.rpartition("@")[2]).geturl())


def master_report(path: str) -> dict:
    """This machine's master for the config, or why it was not found (status still runs)."""
    try:
        with Master.find(path) as master:
            return {"pid": master.pid, "pidfile": path}
    except CtlError as exc:
        return {"pid": None, "pidfile": path, "problem": str(exc)}


def collect(api) -> dict:
    """What ``status`` shows of Redis: processes, queues, totals and the periodic leader."""
    now = time.time()
    processes = [process_report(p, now) for p in api.processes()]
    paused = api.paused_queues()
    queues = [{"name": q.name, "size": q.size, "latency": _finite(q.latency),
               "problem": q.problem, "paused": q.paused}
              for q in api.queue_summaries(listened=True)]
    queues += [{"name": name, "size": 0, "latency": 0.0, "problem": None, "paused": True}
               for name in sorted(paused - {q["name"] for q in queues})]
    stats = api.stats()
    totals = {"processes": len(processes),
              "threads": sum(p["concurrency"] for p in processes),
              "busy": sum(p["busy"] for p in processes),
              "queued": sum(q["size"] for q in queues),
              "scheduled": stats["scheduled"], "retries": stats["retries"],
              "dead": stats["dead"], "processed": stats["processed"], "failed": stats["failed"],
              "cancelled": api.cancelled}
    return {"processes": processes, "queues": queues, "totals": totals,
            "periodic": api.periodic()}


def process_report(process, now: float) -> dict:
    """One heartbeat, any field of which another program (or an attacker) may have written."""
    return {"identity": process.identity, "hostname": process.hostname, "pid": process.pid,
            "tag": process.tag, "labels": process.labels, "queues": process.queues,
            "busy": process.busy, "threads_busy": process.threads_busy,
            "concurrency": max(0, process.concurrency),
            "coroutines": process.coroutines,
            "async_concurrency": max(0, process.async_concurrency),
            "rss_kb": process.rss_kb, "beat_age": _age(process.beat, now),
            "quiet": process.quiet, "problem": process.problem}


def _age(beat: float | None, now: float) -> float | None:
    """Seconds since a heartbeat; None when it holds no usable time."""
    return None if beat is None else _finite(now - beat, 1)


def _finite(seconds: float, digits: int = 3) -> float | None:
    return round(seconds, digits) if math.isfinite(seconds) else None


def render(report: dict) -> str:
    """The report as text; every string from Redis with its control characters escaped."""
    master = report["master"]
    lines = [escape_controls(f"master: pid {master['pid']} ({master['pidfile']})"
                             if master["pid"] else f"master: not found: {master['problem']}")]
    totals = report["totals"]
    lines.append("totals: " + " ".join(f"{name}={value}" for name, value in totals.items()))
    lines.append(f"processes: {totals['processes']}")
    for p in report["processes"]:
        lines.append(escape_controls(process_line(p)))
    lines.append(f"queues: {len(report['queues'])}")
    for q in report["queues"]:
        latency = "?" if q["latency"] is None else f"{q['latency']:.2f} s"
        bad = f" BAD RECORD: {q['problem']}" if q["problem"] else ""
        lines.append(escape_controls(f"  {q['name']}  size={q['size']} latency={latency}"
                                     f"{' PAUSED' if q['paused'] else ''}{bad}"))
    lines.extend(escape_controls(line) for line in periodic_lines(report["periodic"]))
    return "\n".join(lines)


def periodic_lines(periodic: dict) -> list[str]:
    """The leader and each entry's next and last run; nothing when no entry ever ran."""
    leader = periodic["leader"]
    if not periodic["entries"] and leader["identity"] is None and not periodic.get("problem"):
        return []
    lines = [f"periodic leader: {leader['identity']} (master pid {leader['master_pid']})"
             if leader["identity"] else "periodic leader: none"]
    lines += [f"  BAD RECORD: {periodic['problem']}"] if periodic.get("problem") else []
    for entry in periodic["entries"]:
        last = entry["last"]
        ran = (f"tick {_utc(last.get('tick'))} jid {last.get('jid')}"
               if isinstance(last, dict) else "never")
        bad = f" BAD RECORD: {entry['problem']}" if entry.get("problem") else ""
        lines.append(f"  {entry['name']}  next={_utc(entry['next'])} last={ran}{bad}")
    return lines


def _utc(moment) -> str:
    """An epoch time as ISO 8601 UTC to the second; "-" for none; anything else as it is."""
    if moment is None:
        return "-"  # time.gmtime(None) would be the present
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
    except (TypeError, ValueError, OverflowError, OSError):
        return str(moment)


def process_line(p: dict) -> str:
    beat = "?" if p["beat_age"] is None else f"{p['beat_age']:.1f} s ago"
    labels = f" labels={','.join(p['labels'])}" if p["labels"] else ""
    # thread jobs against threads; coroutine jobs, while some run, against their own limit
    load = f"busy={p['threads_busy']}/{p['concurrency']}"
    if p["coroutines"]:
        load += f" coroutines={p['coroutines']}/{p['async_concurrency']}"
    return (f"  {p['identity']}  host={p['hostname']} tag={p['tag'] or '-'} pid={p['pid']} "
            f"{load} rss={p['rss_kb'] / 1024:.1f} MB "
            f"beat={beat} queues={','.join(p['queues'])}{labels}{' QUIET' if p['quiet'] else ''}"
            f"{' BAD RECORD: ' + p['problem'] if p['problem'] else ''}")


if __name__ == "__main__":
    sys.exit(main())
