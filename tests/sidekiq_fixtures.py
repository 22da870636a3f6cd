"""Loads ``tests/fixtures/sidekiq-*.json``: Redis contents as a Ruby Sidekiq version writes them.

Each fixture names the Sidekiq version and, per key, the source file and method it follows.
Values that are JSON objects are written as Ruby's ``JSON.generate`` would (no spaces); strings
are written as they are; ``bitfield_u16`` sets unsigned 16-bit counters at ``#<index>``.
"""

from __future__ import annotations

import json
import os

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def ruby_json(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                          ensure_ascii=False)


def load(redis, name: str) -> dict:
    """Write fixture ``name`` (``sidekiq-8.1.7``) into ``redis``; returns the fixture."""
    with open(os.path.join(FIXTURES, f"{name}.json"), encoding="utf-8") as handle:
        fixture = json.load(handle)
    pipe = redis.pipeline(transaction=False)
    for entry in fixture["keys"]:
        key = entry["key"]
        if "set" in entry:
            pipe.sadd(key, *entry["set"])
        elif "list" in entry:
            pipe.lpush(key, *[ruby_json(job) for job in entry["list"]])
        elif "zset" in entry:
            pipe.zadd(key, {ruby_json(job): score for score, job in entry["zset"]})
        elif "hash" in entry:
            pipe.hset(key, mapping={k: ruby_json(v) for k, v in entry["hash"].items()})
        elif "string" in entry:
            pipe.set(key, entry["string"])
        elif "bitfield_u16" in entry:
            steps = [part for index, count in entry["bitfield_u16"].items()
                     for part in ("SET", "u16", f"#{index}", count)]
            pipe.execute_command("BITFIELD", key, *steps)
        else:
            raise ValueError(f"fixture {name}: key {key!r} has no known type")
    pipe.execute()
    return fixture


def jobs(fixture: dict, key: str) -> list[dict]:
    """The jobs a fixture puts under ``key`` (a list, or a sorted set's members)."""
    entry = next(e for e in fixture["keys"] if e["key"] == key)
    return entry.get("list") or [job for _, job in entry["zset"]]
