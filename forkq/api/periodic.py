"""The periodic leader and each entry's runs, as the leading master wrote them: the read side.

The writer is ``periodic/leader.py`` (in the master): the lease key holds the leader's identity,
and the state hash holds ``<entry>:last`` (JSON ``{tick, jid, at}``) and ``<entry>:next`` (epoch
seconds as text, empty when the entry has no next run). Read here for ``Api.periodic`` (the web
UI, ``forkqctl status``), in whatever process asks. Anyone with write access to Redis may have
written either key in another shape: a field that cannot be read shows as None with the reason
in the entry's ``problem``, and a key of another type as the report's ``problem``; neither
stops the read.
"""

from __future__ import annotations

from ..periodic.leader import master_pid
from .records import json_object, wrong_type


def report(redis, keys) -> dict:
    """``leader`` (``identity`` and its master's ``master_pid``, None when no master leads),
    ``entries`` ({name, next, last, problem}, by name) and ``problem`` (None, or why a key
    could not be read)."""
    pipe = redis.pipeline(transaction=False)
    pipe.get(keys.periodic_leader)
    pipe.hgetall(keys.periodic_state)
    identity, state = pipe.execute(raise_on_error=False)
    problems = []
    if wrong_type(identity):
        problems.append(f"the leader key is not a string ({identity})")
        identity = None
    if wrong_type(state):
        problems.append(f"the state key is not a hash ({state})")
        state = {}
    return {"leader": {"identity": identity, "master_pid": master_pid(identity)},
            "entries": [entry for _, entry in sorted(read_state(state).items())],
            "problem": "; ".join(problems) or None}


def read_state(fields: dict[str, str]) -> dict[str, dict]:
    """Per entry name, from the state hash's fields: ``last`` ({tick, jid, at} or None),
    ``next`` (epoch seconds or None) and ``problem`` (None, or what could not be read)."""
    state: dict[str, dict] = {}
    for field, value in fields.items():
        name, _, kind = field.rpartition(":")
        record = state.setdefault(name, {"name": name, "next": None, "last": None,
                                         "problem": None})
        problem = None
        if kind == "last":
            record["last"], problem = json_object(value, "last")
            record["last"] = record["last"] if problem is None else None
        elif kind == "next" and value:
            record["next"], problem = _seconds(value)
        if problem:
            record["problem"] = "; ".join(filter(None, (record["problem"], problem)))
    return state


def _seconds(text: str) -> tuple[float | None, str | None]:
    try:
        return float(text), None
    except ValueError:
        return None, f"next is not a time ({text[:60]!r})"
