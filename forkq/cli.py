"""The ``forkq`` command: ``start`` (the supervisor), ``worker`` (one process), ``web``,
``enqueue`` (push one job by its wire name, for operators and scripts), ``redis`` (the embedded
server in the foreground).

Runs in the foreground and never daemonizes: systemd, Heroku or a container runtime owns the
process (see ``deploy/``). Flags override the config file and the environment. A configuration
error (a bad file, key, value or ``--bind``) or a bad value given to ``enqueue`` prints one line,
``forkq: <message>``, and exits 1; a flag argparse cannot parse exits 2 with its usage line;
Ctrl-C prints ``forkq: interrupted`` and exits 130.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import math
import sys
import time
from typing import Any

from . import config as config_module
from .errors import ForkqError
from .flags import (add_config_flag, add_worker_flags, closed_pipe, config_path, interrupted,
                    worker_flags)
from .payload import check_args
from .signals import Interrupted, exit_interrupted


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        # Everything after "worker" is the worker's own command line.
        from . import worker

        return worker.main(argv[1:], prog="forkq worker")
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)  # the commands, rather than "a command is required"
        return 2
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ForkqError as exc:
        print(f"forkq: {exc}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        exit_interrupted(stop, "forkq")
    except KeyboardInterrupt:
        return interrupted("forkq")
    except BrokenPipeError:
        return closed_pipe()


START_HELP = """\
Start the supervisor: it reads the config, checks that Redis answers, preloads the modules of
require:, then forks the worker children (processes:, default one per CPU), each running
concurrency: job threads, and restarts any child that exits. Runs in the foreground until TERM
or INT (forkqctl stop); HUP (forkqctl reload) re-reads the config. Without redis_url it starts
an embedded redis-server under data_dir and stops it on exit."""

WEB_HELP = """\
Serve the web UI (queues, busy threads, retries, scheduled and dead jobs, metrics) over HTTP,
reading Redis as the config says. Without redis_url it uses the embedded redis-server under
data_dir: the one that runs (forkq start's, or forkq redis's), else one it starts and stops
when it exits. The embedded server stops with the command that started it: to keep it up
while forkq start and forkq web come and go, run forkq redis first, in a terminal of its own."""

REDIS_HELP = """\
Run the embedded redis-server under the config's data_dir in the foreground, until Ctrl-C or
TERM. forkq start, forkq web, forkq enqueue and the application find it there by the directory
alone (no redis_url) and leave it running when they stop, so that stopping the workers does not
take the web UI and the data with them. Its append-only file under data_dir keeps the jobs
between runs. Exits 1 when a server already runs there, or when redis_url is configured (then
there is no embedded server to run)."""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="forkq", description="Run forkq background jobs.")
    parser.add_argument("--version", action="version", version=f"forkq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, title="commands",
                                     metavar="command")

    start = commands.add_parser("start", help="start the supervisor and its worker children",
                                description=START_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flag(start)
    add_worker_flags(start, threads_help="threads per child")
    start.add_argument("-P", "--processes", type=int, help="worker children (default: CPUs)")
    start.add_argument("-t", "--timeout", type=float, help="seconds jobs get at shutdown")
    start.add_argument("-g", "--tag", help="tag shown in process titles and the web UI")
    start.add_argument("--logfile", help="log to this file instead of stderr")
    start.add_argument("--pidfile", help="write the master's pid here")
    start.set_defaults(run=run_start)

    commands.add_parser("worker", help="run one worker process without a supervisor "
                        "(forkq worker --help lists its options)")

    web = commands.add_parser("web", help="serve the web UI", description=WEB_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flag(web)
    web.add_argument("--bind", help="host:port, host, or a bare port number (default: web.bind "
                     "and web.port of the config; anything but loopback needs web.username and "
                     "web.password_hash)")
    web.add_argument("--hash-password", action="store_true", help="print a web.password_hash "
                     "for a password (typed twice without echo, or the first line of standard "
                     "input when it is not a terminal) and exit")
    web.set_defaults(run=run_web)
    add_enqueue_parser(commands)
    redis = commands.add_parser("redis", help="run the embedded redis-server of the config's "
                                "data_dir in the foreground", description=REDIS_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flag(redis)
    redis.set_defaults(run=run_redis)
    return parser


ENQUEUE_HELP = """\
Push one job by its wire name (the payload's "class": module.QualifiedName, or the job's name)
and print its jid. By default the name is checked first: the modules of the config's require:
are imported (as a worker does) and the job goes through the class itself, so an unknown name
(with the closest registered one), a wrong argument count or bad options are refused, and the
class's own options (queue, retry...) apply unless a flag overrides them. With --no-check the
class need not be importable here, as with Sidekiq's client API (a job that Ruby Sidekiq or
another program runs): the payload is built from the command line alone, so its queue is
--queue or "default" and its retry --retry or true. Redis, namespace and data_dir come from
the config, as for every command; without redis_url, the embedded redis-server under data_dir
is used, and started when no forkq start runs."""


def add_enqueue_parser(commands) -> None:
    enqueue = commands.add_parser(
        "enqueue", help="push one job by its class name, with JSON arguments; prints the jid",
        description=ENQUEUE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    enqueue.add_argument("job_class", metavar="CLASS", help="the job's wire name, e.g. "
                         "app.jobs.send_welcome or HardJob")
    enqueue.add_argument("arguments", metavar="ARGS_JSON", help="the arguments as a JSON "
                         "array, e.g. '[42, \"ann@example.com\"]' ('[]' for none)")
    add_config_flag(enqueue)
    enqueue.add_argument("-q", "--queue", help="queue name (default: the class's queue; "
                         "\"default\" with --no-check)")
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument("--in", dest="in_seconds", metavar="SECONDS",
                      help="run that many seconds from now (through the schedule)")
    when.add_argument("--at", metavar="TIME", help="run at this time: epoch seconds, or ISO "
                      "8601 with a UTC offset (2030-01-31T09:00:00Z, ...T10:00:00+01:00); a "
                      "time in the past enqueues at once")
    enqueue.add_argument("--retry", metavar="true|false|N", help="retries on failure: true "
                         "(max_retries), false (dropped) or a count (0: dead at once)")
    enqueue.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                         help="import require: and push through the job class: refuse an "
                         "unknown class or a wrong argument count (default: check; --no-check "
                         "pushes by name)")
    enqueue.set_defaults(run=run_enqueue)


def start_flags(args: argparse.Namespace) -> dict:
    return {**worker_flags(args), "processes": args.processes, "timeout": args.timeout,
            "tag": args.tag, "logfile": args.logfile, "pidfile": args.pidfile}


def run_start(args: argparse.Namespace) -> int:
    from .supervisor import Supervisor

    path, flags = config_path(args), start_flags(args)
    config = config_module.load(path, flags)
    # HUP re-reads the same file with the same flags and environment.
    return Supervisor(config, reload=lambda: config_module.load(path, flags)).run()


def run_web(args: argparse.Namespace) -> int:
    if args.hash_password:
        from .web import security

        print(security.hash_password(security.read_new_password()))
        return 0
    config = config_module.load(config_path(args))
    host, port = config.web.bind, config.web.port
    if args.bind is not None:
        host, port = config_module.parse_bind(args.bind, port, default_host=host)
    # An IPv6 host in brackets, so that the port cannot be read as part of the address.
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        from . import web
    except ImportError as exc:
        raise ForkqError(f"the web UI cannot start: {exc} (reinstall forkq: jinja2 is one of "
                         f"its dependencies)") from None
    from .connection.embedded import serving

    with serving(config.redis_url, config.data_dir):
        web.serve(config, bind)
    return 0


def run_redis(args: argparse.Namespace) -> int:
    from .connection.embedded import is_running, serving

    config = config_module.load(config_path(args))
    if config.redis_url:
        raise ForkqError("redis: the config names a Redis (redis_url or REDIS_URL): there is "
                         "no embedded server to run")
    if is_running(config.data_dir):
        raise ForkqError(f"redis: an embedded server already runs under {config.data_dir}")
    try:
        with serving(None, config.data_dir) as server:
            print(f"forkq: embedded Redis at {server.url} (data in {server.data_dir}); Ctrl-C "
                  f"stops it", file=sys.stderr, flush=True)
            server.process.wait()
    except KeyboardInterrupt:
        pass
    return 0


def run_enqueue(args: argparse.Namespace) -> int:
    from .connection.embedded import serving
    from .connection.source import default_source

    job_args = parse_job_arguments(args.arguments)
    at = parse_when(args.in_seconds, args.at, time.time())
    options = parse_options(args.job_class, args.queue, args.retry)
    config = config_module.load(config_path(args))
    default_source().use_config(config)
    with serving(config.redis_url, config.data_dir):
        return enqueue_one(args, config, job_args, options, at)


def enqueue_one(args: argparse.Namespace, config, job_args: list, options: dict,
                at: float | None) -> int:
    import redis

    try:
        if args.check:
            jid = push_checked(args.job_class, job_args, options, at, config.require)
        else:
            jid = push_by_name(args.job_class, job_args, options, at)
    except TypeError as exc:
        raise ForkqError(f"enqueue: {exc}") from None
    except redis.RedisError as exc:
        from .connection.urls import redact  # the password stays out of the message

        where = (redact(config.redis_url) if config.redis_url
                 else f"the embedded server under {config.data_dir}")
        raise ForkqError(f"enqueue: Redis at {where}: {exc} (nothing was enqueued)") from None
    print(jid)
    return 0


def parse_job_arguments(text: str) -> list:
    """ARGS_JSON as the job's argument list: a JSON array whose values survive a round trip."""
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON, and no job argument can carry it")

    def finite(number_text: str) -> float:
        number = float(number_text)
        if math.isinf(number):
            raise ValueError(f"{number_text} is too large for a float; pass it as a string")
        return number

    def unique_keys(pairs: list) -> dict:
        keys = [key for key, _ in pairs]
        repeated = next((key for key in keys if keys.count(key) > 1), None)
        if repeated is not None:
            raise ValueError(f"the key {repeated!r} appears twice in one object")
        return dict(pairs)

    try:
        value = json.loads(text, parse_constant=refuse_constant, parse_float=finite,
                           object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise ForkqError(f"enqueue: ARGS_JSON {_shorten(text)} is not valid JSON: {exc}") from None
    except ValueError as exc:
        raise ForkqError(f"enqueue: ARGS_JSON {_shorten(text)}: {exc}") from None
    except RecursionError:
        raise ForkqError(f"enqueue: ARGS_JSON {_shorten(text)} nests deeper than the JSON "
                         f"reader allows; flatten it") from None
    if not isinstance(value, list):
        raise ForkqError(f"enqueue: ARGS_JSON must be a JSON array of the job's arguments, "
                         f"e.g. '[42, \"x\"]' ('[]' for none), not a JSON "
                         f"{_json_kind(value)}: {_shorten(text)}")
    try:  # the client's rule, told before any connection: a lone surrogate, an int too long
        check_args(value, "enqueue: ARGS_JSON")
    except TypeError as exc:
        raise ForkqError(str(exc)) from None
    return value


def _json_kind(value: Any) -> str:
    kinds = {dict: "object", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def _shorten(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_when(in_seconds: str | None, at: str | None, now: float) -> float | None:
    """The epoch time to run at, or None to enqueue now; bounded as ``perform_in``/``_at``."""
    from .options import MAX_DELAY

    if in_seconds is not None:
        delay = _finite_number(in_seconds, "--in")
        if delay < 0:
            raise ForkqError(f"enqueue: --in {in_seconds!r}: expected seconds >= 0")
        moment, given = now + delay, f"--in {in_seconds!r}"
    elif at is not None:
        moment, given = _parse_at(at), f"--at {at!r}"
    else:
        return None
    if moment - now > MAX_DELAY:
        raise ForkqError(f"enqueue: {given} is more than 100 years from now (milliseconds? "
                         f"pass seconds)")
    return moment


def _finite_number(text: str, flag: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ForkqError(f"enqueue: {flag} {text!r}: expected a number of seconds") from None
    if not math.isfinite(number):
        raise ForkqError(f"enqueue: {flag} {text!r}: expected a finite number of seconds")
    return number


def _parse_at(text: str) -> float:
    try:
        return _finite_number(text, "--at")
    except ForkqError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ForkqError(f"enqueue: --at {text!r}: expected epoch seconds or an ISO 8601 time "
                         f"with a UTC offset, e.g. 2030-01-31T09:00:00Z") from None
    if moment.tzinfo is None:
        raise ForkqError(f"enqueue: --at {text!r} has no UTC offset, so its moment depends on "
                         f"the machine's time zone; add one (Z for UTC, or +01:00)")
    return moment.timestamp()


def parse_options(name: str, queue: str | None, retry: str | None) -> dict[str, Any]:
    """The per-call options given by flags, checked as ``Job.set()`` checks them."""
    from .options import validate_options

    if not name or not name.isprintable() or any(char.isspace() for char in name):
        raise ForkqError(f"enqueue: CLASS {name!r}: expected a job's wire name, without "
                         f"whitespace or control characters")
    options = {key: value for key, value in (("queue", queue), ("retry", parse_retry(retry)))
               if value is not None}
    try:
        validate_options(options, name, per_call=True)
    except TypeError as exc:
        raise ForkqError(f"enqueue: {exc}") from None
    return options


def parse_retry(text: str | None) -> bool | int | None:
    if text is None:
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.isascii() and text.isdigit():
        return int(text)
    raise ForkqError(f"enqueue: --retry {text!r}: expected true, false or a count of retries")


class NamedJob:
    """A job known only by its wire name: what ``client.build_payload`` needs of a class."""

    options = {"queue": "default", "retry": True}

    def __init__(self, wire_name: str) -> None:
        self._wire_name = wire_name

    def wire_name(self) -> str:
        return self._wire_name


def push_by_name(name: str, job_args: list, options: dict, at: float | None) -> str:
    from . import client

    now = time.time()
    payload = client.build_payload(NamedJob(name), job_args, options, now)
    # No middleware, no arity: the class is not known here (``--check`` pushes through it).
    client.default().push_payloads([client.Prepared(NamedJob(name), payload, None)], at, now=now)
    return payload["jid"]


def push_checked(name: str, job_args: list, options: dict, at: float | None,
                 modules: tuple[str, ...]) -> str:
    from .job import known_names, resolve
    from .worker import import_required

    import_required(modules)
    job_class = resolve(name)
    if job_class is None:
        close = difflib.get_close_matches(name, known_names(), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ForkqError(f"enqueue: no job named {name!r} is registered by the modules of "
                         f"require: {list(modules)}{hint}; check the name, or pass --no-check "
                         f"to push it by name anyway (a job another program runs)")
    setter = job_class.set(**options)
    jid = setter.perform_async(*job_args) if at is None else setter.perform_at(at, *job_args)
    if jid is None:
        raise ForkqError(f"enqueue: the push of {name} was refused, by a client middleware or "
                         f"by a unique lock another job holds (unique_for); nothing was enqueued")
    return jid


if __name__ == "__main__":
    sys.exit(main())
