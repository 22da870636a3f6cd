"""systemd readiness (``Type=notify``): one datagram to ``NOTIFY_SOCKET``, no library.

Sent by the supervisor's master: ``READY=1`` once all children are up, ``STOPPING=1`` at
shutdown. Without ``NOTIFY_SOCKET`` (not under systemd) nothing is sent.
"""

from __future__ import annotations

import os
import socket

from ..log import logger


def notify_address(value: str) -> str:
    """systemd's ``NOTIFY_SOCKET``: a path, or an abstract socket when it starts with '@'."""
    return "\0" + value[1:] if value.startswith("@") else value


def notify(message: str) -> None:
    """Tell systemd (``Type=notify``) about readiness or stopping; nothing without it."""
    value = os.environ.get("NOTIFY_SOCKET")
    if not value:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), notify_address(value))
    except OSError as exc:
        logger.warning("could not notify systemd at %s: %s", value, exc)
