"""Signal handling for forkq's loops: handlers only record the signal, the owning loop acts.

A self-pipe wakes the loop from ``select`` at once, so a signal is handled within
microseconds, not at the next timeout. Used by the worker's and the supervisor's main loops.

Before its loop takes the signals, a process is still starting (its embedded Redis up, the
application being imported): ``stop_while_starting`` makes TERM and INT raise ``Interrupted``
there, so that the ``finally`` blocks on the way out stop what was started, and
``exit_interrupted`` then ends the process as the signal would have, with one line.

``REMOTE_SIGNALS`` is the one list of signals a running worker takes through Redis
(``<identity>-signals``): the admin API (``api.Api.signal``, the web UI, ``forkqctl``) refuses
any other, and the heartbeat hands these to the worker's loop as if they had arrived. USR2 is
one of them: the worker's answer to it is to reopen its log files (``log.reopen``), harmless
from afar, and Sidekiq's heartbeat passes on whatever signal name it finds there.
"""

from __future__ import annotations

import os
import select
import signal
import sys
from typing import NoReturn

#: signals a worker takes from ``<identity>-signals`` (pushed by ``api``), by name
REMOTE_SIGNALS = {"TSTP": signal.SIGTSTP, "TERM": signal.SIGTERM, "TTIN": signal.SIGTTIN,
                  "USR2": signal.SIGUSR2}


#: the signals that stop a process that is still starting
STARTUP_STOPS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """TERM or INT arrived while the process was starting (``stop_while_starting``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_while_starting() -> None:
    """Until a loop installs its own handlers, TERM and INT raise ``Interrupted``. A signal
    that the parent had ignored (INT for a shell's background job) stays ignored."""
    for signum in STARTUP_STOPS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _interrupt)


def _interrupt(signum, frame) -> None:
    raise Interrupted(signum)


def exit_interrupted(stop: Interrupted, what: str) -> NoReturn:
    """Say what ``stop`` ended, then end the process by its signal (as the parent expects of a
    process it signalled: ``-15``, not an exit code)."""
    print(f"{what}: stopped by {stop} while starting", file=sys.stderr, flush=True)
    signal.signal(stop.signum, signal.SIG_DFL)
    os.kill(os.getpid(), stop.signum)
    raise SystemExit(128 + stop.signum)  # reached only while the signal is blocked


class SignalQueue:
    def __init__(self) -> None:
        self.pending: list[int] = []
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def install(self, signums) -> None:
        for signum in signums:
            signal.signal(signum, self._record)

    def _record(self, signum, frame) -> None:
        self.pending.append(signum)
        try:
            os.write(self._write, b".")
        except BlockingIOError:
            pass

    def push(self, signum: int) -> None:
        """Queue a signal from code (remote control through Redis) as if it had arrived."""
        self._record(signum, None)

    def wait(self, timeout: float) -> list[int]:
        """The signals received since the last call, waiting up to ``timeout`` for one."""
        if not self.pending:
            try:
                select.select([self._read], [], [], max(0.0, timeout))
            except InterruptedError:
                pass
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass
        received = []
        while self.pending:
            received.append(self.pending.pop(0))
        return received

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)
