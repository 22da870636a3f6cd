"""The ``forkq`` command: ``start`` (the supervisor), ``worker`` (one process), ``web``.

Runs in the foreground and never daemonizes: systemd, Heroku or a container runtime owns the
process (see ``deploy/``). Flags override the config file and the environment. A configuration
error (a bad file, key, value or ``--bind``) prints one line, ``forkq: <message>``, and exits 1;
a flag argparse cannot parse exits 2 with its usage line.
"""

from __future__ import annotations

import argparse
import sys

from . import config as config_module
from .errors import ForkqError

#: read when neither ``-c`` nor ``FORKQ_CONFIG`` is given and it exists in the current directory
DEFAULT_CONFIG = config_module.DEFAULT_FILE


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        # Everything after "worker" is the worker's own command line.
        from . import worker

        return worker.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ForkqError as exc:
        print(f"forkq: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forkq", description="Run forkq background jobs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    start = commands.add_parser("start", help="start the supervisor and its worker children")
    add_config_flag(start)
    start.add_argument("-r", "--require", action="append", help="module that registers jobs "
                       "(repeatable)")
    start.add_argument("-q", "--queue", action="append", dest="queues",
                       help="queue name, or name,weight (repeatable)")
    start.add_argument("-C", "--concurrency", type=int, help="threads per child")
    start.add_argument("-P", "--processes", type=int, help="worker children (default: CPUs)")
    start.add_argument("-t", "--timeout", type=float, help="seconds jobs get at shutdown")
    start.add_argument("-g", "--tag", help="tag shown in process titles and the web UI")
    start.add_argument("--logfile", help="log to this file instead of stderr")
    start.add_argument("--pidfile", help="write the master's pid here")
    start.set_defaults(run=run_start)

    commands.add_parser("worker", help="run one worker process without a supervisor (the "
                        "options of python -m forkq.worker)")

    web = commands.add_parser("web", help="serve the web UI")
    add_config_flag(web)
    web.add_argument("--bind", help="host:port (default: web.bind and web.port of the config; "
                     "anything but loopback needs web.username and web.password_hash)")
    web.set_defaults(run=run_web)
    return parser


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help=f"path to the YAML config (default: "
                        f"$FORKQ_CONFIG, else ./{DEFAULT_CONFIG} when it exists)")


def config_path(args: argparse.Namespace) -> str | None:
    """``-c``, else ``FORKQ_CONFIG``, else ``./forkq.yml`` when it exists: the client's rule."""
    return args.config or config_module.default_path()


def start_flags(args: argparse.Namespace) -> dict:
    return {"require": args.require, "queues": args.queues, "concurrency": args.concurrency,
            "processes": args.processes, "timeout": args.timeout, "tag": args.tag,
            "logfile": args.logfile, "pidfile": args.pidfile}


def run_start(args: argparse.Namespace) -> int:
    from .supervisor import Supervisor

    path, flags = config_path(args), start_flags(args)
    config = config_module.load(path, flags)
    # HUP re-reads the same file with the same flags and environment.
    return Supervisor(config, reload=lambda: config_module.load(path, flags)).run()


def run_web(args: argparse.Namespace) -> int:
    config = config_module.load(config_path(args))
    host, port = config.web.bind, config.web.port
    if args.bind is not None:
        host, port = config_module.parse_bind(args.bind, port)
    # An IPv6 host in brackets, so that the port cannot be read as part of the address.
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        from . import web
    except ImportError as exc:
        raise ForkqError(f"the web UI cannot start: {exc} (reinstall forkq: jinja2 is one of "
                         f"its dependencies)") from None
    web.serve(config, bind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
