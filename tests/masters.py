"""Real ``forkq start`` masters for the end-to-end tests: start, signal, read logs, wait."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
import yaml

from forkq.supervisor import pidfile
from helpers import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")

#: settings every test master starts from: fast heartbeats and polls, short timeouts
BASE_SETTINGS = {"require": ["e2e_jobs"], "processes": 2, "concurrency": 3, "timeout": 2,
                 "heartbeat_interval": 0.5, "heartbeat_ttl": 2, "poll_interval": 0.5,
                 "metrics": {"port": None}}


class Master:
    """A ``forkq start`` subprocess on a config file written to a temporary directory."""

    #: a command the master runs under (``opentelemetry-instrument``), before the interpreter
    launcher: list[str] = []

    def __init__(self, directory, env: dict | None = None, **settings) -> None:
        self.dir = directory
        self.config_path = str(directory / "forkq.yml")
        self.logfile = str(directory / "forkq.log")
        self.settings = {**BASE_SETTINGS, "logfile": self.logfile,
                         "data_dir": str(directory / "data"), **settings}
        # data_dir=None leaves it out of the file: the default, relative to the master's cwd
        self.data_dir = str(directory / (self.settings["data_dir"] or ".forkq"))
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.seen: set[int] = set()
        self.write_config()

    def write_config(self, **changes) -> None:
        self.settings.update(changes)
        with open(self.config_path, "w") as handle:
            yaml.safe_dump({k: v for k, v in self.settings.items() if v is not None}, handle)

    def start(self, *flags: str) -> "Master":
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "NOTIFY_SOCKET")}
        env["PYTHONPATH"] = os.pathsep.join([ROOT, TESTS, str(self.dir)])
        env.update(self.extra_env)
        self.stderr_path = str(self.dir / "stderr.txt")
        with open(self.stderr_path, "w") as stderr:
            self.proc = subprocess.Popen(
                [*self.launcher, sys.executable, "-m", "forkq.cli", "start", "-c", self.config_path, *flags],
                env=env, cwd=str(self.dir), stdin=subprocess.DEVNULL, stdout=stderr,
                stderr=stderr)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self) -> dict | None:
        try:
            with open(os.path.join(self.data_dir, "status.json")) as handle:
                status = json.load(handle)
        except (OSError, ValueError):
            return None
        self.seen.update(c["pid"] for c in status["children"] if c["pid"])
        return status

    def ready_pids(self, count: int | None = None, timeout: float = 15.0) -> list[int]:
        """Pids of the children once ``count`` of them (default: processes) are ready."""
        count = count or self.settings["processes"]

        def ready():
            status = self.status()
            children = status["children"] if status else []
            pids = [c["pid"] for c in children if c["ready"] and c["pid"]]
            return pids if len(pids) == count and len(children) == count else None
        return wait_for(ready, timeout, message=f"{count} ready children")

    def child(self, slot: int) -> dict:
        return next(c for c in self.status()["children"] if c["slot"] == slot)

    def send(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def log(self) -> str:
        with open(self.logfile) as handle:
            return handle.read()

    def stderr(self) -> str:
        with open(self.stderr_path) as handle:
            return handle.read()

    def kill_all(self) -> None:
        """Teardown: SIGKILL the master and any child of it still running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.seen.update(p.pid for p in psutil.Process(self.pid).children())
            self.proc.kill()
            self.proc.wait()
        for pid in self.seen:
            if pidfile.is_forkq_process(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_master(tmp_path, redis_url, redis):
    """Start masters on the test Redis; every one is killed (with its children) at teardown."""
    masters = []

    def start(*flags, env=None, modules=None, **settings) -> Master:
        directory = tmp_path / f"m{len(masters)}"
        directory.mkdir()
        for name, text in (modules or {}).items():
            (directory / f"{name}.py").write_text(text)
        master = Master(directory, env, **{"redis_url": redis_url, **settings})
        masters.append(master)
        return master.start(*flags)

    yield start
    for master in masters:
        master.kill_all()


@pytest.fixture
def tail_forkq_log(tmp_path):
    """An unrelated process with "forkq" in its command line, as an operator would run."""
    log = tmp_path / "forkq.log"
    log.write_text("")
    process = subprocess.Popen(["tail", "-f", str(log)], stdout=subprocess.DEVNULL)
    yield process
    process.kill()
    process.wait()


def started_by(redis, jid: str) -> int | None:
    pid = redis.hget("e2e:started", jid)
    return int(pid) if pid else None


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie (one that may also vanish as it is looked at)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def title(pid: int) -> str:
    """The process title setproctitle wrote (the padding of the old argv stripped)."""
    return " ".join(psutil.Process(pid).cmdline()).strip()


def inflight_keys(redis) -> list[str]:
    return [key for key in redis.keys("forkq:inflight:*") if redis.llen(key)]
