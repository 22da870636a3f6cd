"""Socket timeouts kept by the kernel (``SO_RCVTIMEO``, ``SO_SNDTIMEO``), not by Python.

A Python socket with a timeout polls before every send and every receive: three system calls
a round trip instead of one, about a fifth of the CPU of a job whose body makes one Redis
call. A connection with ``KernelTimeouts`` keeps its socket blocking and has the kernel end a
send or a receive that waits longer than ``socket_timeout``; the error is still
``redis.TimeoutError``, and the connection is dropped as before. The wait is per system call,
not per command: a reply that trickles in more slowly than one chunk per timeout could take
longer, which a Redis that stopped answering never does. TLS sockets keep Python's timeout
(``SSLConnection`` is not given the mixin): OpenSSL reads on its own schedule.
"""

from __future__ import annotations

import socket
import struct

import redis


class KernelTimeouts:
    """A redis-py ``Connection`` mixin: ``socket_timeout`` is enforced by the kernel."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        #: seconds a send or a receive may wait, or None: Python's own (none, or non-blocking)
        self.kernel_timeout = None
        if self.socket_timeout is not None and self.socket_timeout > 0:
            self.kernel_timeout, self.socket_timeout = self.socket_timeout, None
            if hasattr(self, "orig_socket_timeout"):
                # what redis-py restores after a server's maintenance notice relaxed it
                self.orig_socket_timeout = None

    def _connect(self):
        sock = super()._connect()
        if self.kernel_timeout is not None:
            # a zero timeval is no limit at all: the shortest limit is a microsecond
            seconds, microseconds = divmod(max(1, round(self.kernel_timeout * 1e6)), 1_000_000)
            timeval = struct.pack("@ll", seconds, microseconds)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        return sock

    def send_packed_command(self, command, check_health=True):
        try:
            super().send_packed_command(command, check_health)
        except redis.ConnectionError as exc:
            _raise_if_timed_out(exc, f"Timeout writing to {self._host_error()}")
            raise

    def read_response(self, *args, **kwargs):
        try:
            return super().read_response(*args, **kwargs)
        except redis.ConnectionError as exc:
            _raise_if_timed_out(exc, f"Timeout reading from {self._host_error()}")
            raise


def _raise_if_timed_out(exc: redis.ConnectionError, message: str) -> None:
    """A blocking socket whose kernel timeout ran out fails with ``EAGAIN``, which redis-py
    reports as a lost connection: it is a timeout, named as redis-py names its own."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, BlockingIOError):
        raise redis.TimeoutError(message) from None
