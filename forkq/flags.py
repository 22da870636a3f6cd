"""The command-line flags that ``forkq`` (``cli.py``, ``ctl.py``) and ``python -m forkq.worker``
share, and the config keys they set.

Defined once so that ``forkq start`` and a lone worker read ``-c``, ``-r``, ``-q`` and ``-C``
alike. Pure argparse, imported by the commands in the process that parses them; it imports
neither the commands nor the worker, so each of them may import it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from . import config as config_module


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help=f"path to the YAML config (default: "
                        f"$FORKQ_CONFIG, else ./{config_module.DEFAULT_FILE} when it exists)")


def config_path(args: argparse.Namespace) -> str | None:
    """``-c``, else ``FORKQ_CONFIG``, else ``./forkq.yml`` when it exists: the client's rule."""
    return args.config or config_module.default_path()


def add_worker_flags(parser: argparse.ArgumentParser, threads_help: str) -> None:
    """``-r``, ``-q`` and ``-C``: what a worker runs, with how many threads."""
    parser.add_argument("-r", "--require", action="append", help="module that registers jobs "
                        "(repeatable)")
    parser.add_argument("-q", "--queue", action="append", dest="queues",
                        help="queue name, or name,weight (repeatable)")
    parser.add_argument("-C", "--concurrency", type=int, help=threads_help)
    levels = ", ".join(sorted(config_module.LOGLEVELS))
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("--loglevel", metavar="LEVEL", help=f"log level ({levels}; default: "
                           f"the config's loglevel, else info)")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log at debug level "
                           "(--loglevel debug)")


def worker_flags(args: argparse.Namespace) -> dict:
    """The config keys ``add_worker_flags``' flags set (None: not given)."""
    return {"require": args.require, "queues": args.queues, "concurrency": args.concurrency,
            "loglevel": "debug" if args.verbose else args.loglevel}


def interrupted(prog: str) -> int:
    """The exit code of a command stopped by Ctrl-C (or TERM where ``embedded.serving`` makes
    it one): one line instead of a traceback, and the shell's code for an interrupt (130). The
    ``finally`` blocks on the way out have already run (an embedded Redis started for the
    command is stopped)."""
    print(f"{prog}: interrupted", file=sys.stderr, flush=True)
    return 128 + signal.SIGINT


def closed_pipe() -> int:
    """The exit code when the reader of standard output went away (``forkqctl status | head``).

    Not an error of the command: it exits quietly, with the shell's code for a process ended by
    SIGPIPE (141). Standard output is pointed at /dev/null first, so that the interpreter's own
    flush at exit does not raise a second BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE
