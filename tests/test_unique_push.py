"""Lock and push in one script call (real Redis): what clients send (seen by MONITOR), what
lands in Redis, duplicates inside a batch and against held locks, NOSCRIPT, replicas."""

from __future__ import annotations

import json
import logging

import pytest
import redis as redis_py

import forkq
from forkq.keys import Keys
from forkq import aio, client, connection, push
from test_aio import run  # the asyncio tests' runner: a loop that closes its clients

MARK = "end-of-push"
#: what a client sends as it opens a connection, before any push
HANDSHAKE = {"HELLO", "CLIENT", "SELECT", "AUTH"}


class Daily(forkq.Job):
    options = {"unique_for": 60}

    def perform(self, day):
        pass


class Kept(forkq.Job):
    options = {"unique_for": 60, "result_ttl": 300}

    def perform(self, day):
        pass


def sent_by_clients(redis, action, cached=True) -> tuple[object, list[str]]:
    """What ``action`` returned and the commands clients sent meanwhile (MONITOR), the calls a
    script made and connection handshakes left out: one command is one round trip. ``cached``:
    the server has the script already, as after a process's first unique push."""
    if cached:
        redis.script_load(push.LOCK_PUSH_SCRIPT)
    with redis.monitor() as monitor:
        returned = action()
        redis.echo(MARK)
        sent = []
        while (command := monitor.next_command())["command"] != f"ECHO {MARK}":
            name = command["command"].split()[0].upper()
            if command["client_type"] != "lua" and name not in HANDSHAKE:
                sent.append(name)
    return returned, sent


def queued(redis, name="default"):
    return [json.loads(text) for text in redis.lrange(f"queue:{name}", 0, -1)]


def lock_of(redis, job) -> str | None:
    return redis.get(f"forkq:unique:{job['unique_digest']}")


PUSHES = {
    "sync": lambda job, *args: job.perform_async(*args),
    "asyncio": lambda job, *args: run(aio.perform_async(job, *args)),
}
BULKS = {
    "sync": lambda job, args_list: job.perform_bulk(args_list),
    "asyncio": lambda job, args_list: run(aio.perform_bulk(job, args_list)),
}
SCHEDULES = {
    "sync": lambda job, *args: job.perform_in(100, *args),
    "asyncio": lambda job, *args: run(aio.perform_in(job, 100, *args)),
}


@pytest.mark.parametrize("side", PUSHES)
def test_a_unique_push_is_one_command_and_a_duplicate_pushes_nothing(redis, side, caplog):
    jid, sent = sent_by_clients(redis, lambda: PUSHES[side](Daily, "mon"))
    assert jid and sent == ["EVALSHA"]
    (job,) = queued(redis)
    assert job["jid"] == jid and lock_of(redis, job) == jid
    assert redis.smembers("queues") == {"default"}
    assert job["enqueued_at"] >= job["created_at"], "enqueued_at as push.commands sets it"
    with caplog.at_level(logging.DEBUG, logger="forkq"):
        again, sent = sent_by_clients(redis, lambda: PUSHES[side](Daily, "mon"))
    assert again is None and sent == ["EVALSHA"]
    assert queued(redis) == [job] and lock_of(redis, job) == jid
    assert "already queued, scheduled or running; not enqueued" in caplog.text


@pytest.mark.parametrize("side", BULKS)
def test_bulk_refuses_duplicates_inside_the_batch_and_against_held_locks(redis, side):
    held = Daily.perform_async(1)
    jids, sent = sent_by_clients(redis, lambda: BULKS[side](Daily, [[1], [2], [2], [3], [4]]))
    assert sent == ["EVALSHA"], "a batch is one script call"
    jobs = queued(redis)
    assert [job["args"] for job in jobs] == [[4], [3], [2], [1]], "LPUSH order, as one push"
    assert [job["jid"] for job in jobs[:3]] == jids[::-1] and held not in jids
    assert all(lock_of(redis, job) == job["jid"] for job in jobs)


@pytest.mark.parametrize("side", SCHEDULES)
def test_a_scheduled_unique_job_is_one_command_into_schedule(redis, side):
    jid, sent = sent_by_clients(redis, lambda: SCHEDULES[side](Daily, "later"))
    assert jid and sent == ["EVALSHA"]
    ((member, score),) = redis.zrange("schedule", 0, -1, withscores=True)
    job = json.loads(member)
    assert job["jid"] == jid and "enqueued_at" not in job and redis.llen("queue:default") == 0
    assert score == pytest.approx(job["created_at"] + 100, abs=0.01)
    assert 159 < redis.pttl(f"forkq:unique:{job['unique_digest']}") / 1000 <= 160
    assert SCHEDULES[side](Daily, "later") is None and redis.zcard("schedule") == 1


@pytest.mark.parametrize("side", PUSHES)
def test_a_job_keeping_a_result_gets_its_queued_record_and_a_duplicate_none(redis, side):
    jid = PUSHES[side](Kept, "tue")
    record = json.loads(redis.get(f"forkq:result:{jid}"))
    assert (record["status"], record["args"]) == ("queued", ["tue"])
    assert 299 < redis.ttl(f"forkq:result:{jid}") <= 300
    assert PUSHES[side](Kept, "tue") is None
    assert redis.keys("forkq:result:*") == [f"forkq:result:{jid}"]


@pytest.mark.parametrize("side", PUSHES)
def test_the_script_is_sent_again_after_script_flush(redis, side):
    PUSHES[side](Daily, "wed")
    redis.script_flush()
    jid, sent = sent_by_clients(redis, lambda: PUSHES[side](Daily, "thu"), cached=False)
    assert jid and sent == ["EVALSHA", "EVAL"]
    assert [job["args"] for job in queued(redis)] == [["thu"], ["wed"]]
    assert PUSHES[side](Daily, "fri") and redis.llen("queue:default") == 3


@pytest.mark.parametrize("side", PUSHES)
def test_a_failed_push_command_leaves_no_lock(redis, side):
    redis.set("queue:default", "not a list")  # the LPUSH inside the script fails: WRONGTYPE
    with pytest.raises(redis_py.ResponseError, match="WRONGTYPE"):
        PUSHES[side](Daily, "sat")
    assert redis.keys("forkq:unique:*") == []
    redis.delete("queue:default")
    assert PUSHES[side](Daily, "sat") is not None


@pytest.mark.parametrize("side", PUSHES)
def test_wait_replicas_follows_the_script_in_the_same_write(redis, redis_url, side):
    client.configure(redis_url=redis_url + "?wait_replicas=1&wait_timeout=0.05")
    with pytest.raises(connection.ReplicaTimeoutError, match="confirmed by 0 of 1 replica"):
        sent_by_clients(redis, lambda: PUSHES[side](Daily, "sun"))
    (job,) = queued(redis)
    assert lock_of(redis, job) == job["jid"], "the push stands on the primary, with its lock"


def test_the_script_runs_the_commands_push_commands_builds():
    payload = {"class": "app.Job", "args": [1], "queue": "low", "jid": "j1", "created_at": 5.0}
    before, call, undo = push.script_call(Keys(), [payload], [("d", 1.5)], None, 7.0)
    assert before == [] and undo == [[]]  # one server: every command in the script
    (sadd, lpush) = push.commands(Keys(), [dict(payload)], None, 7.0)
    assert call[:5] == ("EVALSHA", push.LOCK_PUSH.sha, 3, "forkq:unique:d", sadd[1])
    assert call[5:] == (lpush[1], "j1", 1500, 2, "SADD", 1, "low", "LPUSH", 1, lpush[2])
    assert push.LOCK_PUSH.fallback(call)[:2] == ("EVAL", push.LOCK_PUSH_SCRIPT)


@pytest.mark.parametrize("side", ["sync", "asyncio"])
def test_a_batch_bigger_than_a_script_call_takes_several(redis, side, monkeypatch):
    monkeypatch.setattr(push, "SCRIPT_BATCH", 2)
    bulk = {"sync": lambda: Daily.perform_bulk([[n] for n in range(5)], batch_size=10),
            "asyncio": lambda: run(aio.perform_bulk(Daily, [[n] for n in range(5)],
                                                    batch_size=10))}[side]
    jids, sent = sent_by_clients(redis, bulk)
    assert sent == ["EVALSHA"] * 3 and len(jids) == 5
    assert sorted(job["args"][0] for job in queued(redis)) == [0, 1, 2, 3, 4]


def test_a_bulk_batch_that_middleware_refuses_whole_pushes_nothing(redis):
    chain = client.default().middleware

    def refuse(job_class, payload, queue, call_next):
        return None

    chain.add_client(refuse)
    try:
        assert Daily.perform_bulk([[1], [2]]) == []
        assert Kept.perform_bulk([[1]]) == []
    finally:
        chain.client.remove(refuse)
    assert redis.keys("*") == []
