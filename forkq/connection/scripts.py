"""Lua scripts run by their SHA1, with the NOSCRIPT rule in one place.

A ``Script`` is made once, at import, from its text. A call sends ``EVALSHA``: the script's
text goes over the wire only when the server lacks it (after a restart, a failover to a
replica that never ran it, or ``SCRIPT FLUSH``). Then the server answers NOSCRIPT and the same
call is sent once more as ``EVAL`` carrying the text: one round trip, and the server keeps the
script for the next ``EVALSHA``. A script never changes the data before NOSCRIPT, so the
second send cannot run it twice.

``__call__`` runs a script on a redis-py client, ``call_async`` on a ``redis.asyncio`` one.
Callers that send the command their own way (the fetch's hot path on its own connection, a
push sent with ``connection.send_commands``) build it with ``command`` and send it through
``send_by`` (or ``send_by_async``), which holds the NOSCRIPT rule for every caller. No client is
kept, so a Script crosses a fork safely and serves every thread.
"""

from __future__ import annotations

import hashlib
from typing import Any, Awaitable, Callable, Sequence

from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError

#: execute_command's option for a reply read as bytes (payloads need not be UTF-8)
_RAW = {NEVER_DECODE: True}


class Script:
    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def command(self, keys: Sequence, args: Sequence = ()) -> tuple:
        """The ``EVALSHA`` command, for a caller that sends it itself."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def fallback(self, command: tuple) -> tuple:
        """``command`` as an ``EVAL`` carrying the text: what to send after NOSCRIPT."""
        return ("EVAL", self.text, *command[2:])

    def send_by(self, send: Callable[[tuple], Any], command: tuple) -> Any:
        """``send(command)``, and once more as ``fallback(command)`` after NOSCRIPT: the rule
        for a caller that sends a command it built with ``command`` its own way."""
        try:
            return send(command)
        except NoScriptError:
            return send(self.fallback(command))

    async def send_by_async(self, send: Callable[[tuple], Awaitable], command: tuple) -> Any:
        """``send_by`` for a ``send`` that returns an awaitable (``redis.asyncio``)."""
        try:
            return await send(command)
        except NoScriptError:
            return await send(self.fallback(command))

    def __call__(self, client, keys: Sequence, args: Sequence = (), raw: bool = False,
                 node=None) -> Any:
        """The script's reply on ``client``; with ``raw``, strings in it stay bytes. ``node``:
        a cluster client sends it to that node, following a redirection but not repeating a
        call whose reply was lost, as it otherwise does up to ten times: the caller, which
        knows what a repeat of its script would do, decides (``clusterfetch.py``)."""
        options = _RAW if raw else {}
        if node is not None:
            options = {**options, "target_nodes": node}
        return self.send_by(lambda command: client.execute_command(*command, **options),
                            self.command(keys, args))

    async def call_async(self, client, keys: Sequence, args: Sequence = (),
                         raw: bool = False) -> Any:
        """``__call__`` on a ``redis.asyncio`` client."""
        options = _RAW if raw else {}
        return await self.send_by_async(
            lambda command: client.execute_command(*command, **options), self.command(keys, args))
