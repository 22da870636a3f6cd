"""The one writer of the dead set: adds, moves and the trim, on a real Redis."""

from __future__ import annotations

import base64
import json

from forkq import dead
from forkq.keys import Keys


def test_add_trims_by_count_and_age(redis):
    keys = Keys()
    dead_set = dead.DeadWriter(keys, max_jobs=3, timeout=100)
    dead_set.add(redis, ["ancient"], 1000.0)
    for i in range(5):
        dead_set.add(redis, [f"job{i}"], 1_000_000.0 + i)
    assert redis.zrange(keys.dead, 0, -1) == ["job2", "job3", "job4"]


def test_move_from_zset_buries_only_what_it_removed(redis):
    keys = Keys()
    dead_set = dead.DeadWriter(keys, max_jobs=10, timeout=1e9)
    redis.zadd(keys.retry, {"a": 1.0, "b": 2.0})
    moved = dead_set.move_from_zset(redis, keys.retry, [("a", "a*"), ("gone", "gone*")])
    assert moved == 1
    assert redis.zrange(keys.retry, 0, -1) == ["b"]
    assert redis.zrange(keys.dead, 0, -1) == ["a*"]


def test_move_from_list_removes_one_copy(redis):
    keys = Keys()
    dead_set = dead.DeadWriter(keys, max_jobs=10, timeout=1e9)
    redis.rpush("inflight", "x", "x", "y")
    assert dead_set.move_from_list(redis, "inflight", [("x", "x-dead")]) == 1
    assert redis.lrange("inflight", 0, -1) == ["x", "y"]
    assert redis.zrange(keys.dead, 0, -1) == ["x-dead"]


def test_envelope_keeps_text_and_bytes_losslessly():
    text = json.loads(dead.envelope('{"class": 1', "no class", "q", "j" * 24, 5.0))
    assert text["raw"] == '{"class": 1' and text["error_message"] == "no class"
    assert text["class"] == dead.MALFORMED_CLASS and "raw_encoding" not in text
    raw = b'{"class":"A","args":["\xff\xfe"]}'
    binary = json.loads(dead.envelope(raw, "not UTF-8", None, "j" * 24, 5.0))
    assert binary["raw_encoding"] == "base64" and binary["queue"] == "default"
    assert base64.b64decode(binary["raw"]) == raw


def test_bury_sends_the_script_text_only_when_the_server_lacks_it(redis, monkeypatch):
    dead_set = dead.DeadWriter(Keys(), max_jobs=10, timeout=3600)
    redis.script_flush()
    sent = []
    real_execute = redis.execute_command
    monkeypatch.setattr(redis, "execute_command",
                        lambda *a, **options: sent.append(a[0]) or real_execute(*a, **options))
    dead_set.add(redis, ['{"jid":"a"}'])
    assert sent == ["EVALSHA", "EVAL"] and redis.script_exists(dead.BURY.sha) == [True]
    dead_set.add(redis, ['{"jid":"b"}'])
    dead_set.add(redis, ['{"jid":"c"}'])
    assert sent.count("EVAL") == 1 and redis.zcard("dead") == 3
