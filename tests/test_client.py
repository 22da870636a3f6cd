"""Enqueueing against a real Redis: layout, options, bulk push, refusal of non-JSON args."""

import json
import time

import pytest

import forkq
from forkq import client
from jobs import Record, Shared, add


def queued(redis, name="default"):
    return [json.loads(t) for t in redis.lrange(f"queue:{name}", 0, -1)]


def test_perform_async_pushes_a_sidekiq_job(redis):
    jid = Record.perform_async("x")
    (job,) = queued(redis)
    assert job["jid"] == jid and len(jid) == 24 and int(jid, 16) >= 0
    assert job["class"] == "jobs.Record" and job["args"] == ["x"]
    assert job["queue"] == "default" and job["retry"] is True
    assert job["enqueued_at"] >= job["created_at"] > time.time() - 5
    assert redis.smembers("queues") == {"default"}


def test_wire_name_and_function_jobs(redis):
    Shared.perform_async(1, "b")
    add.perform_async(1, 2)
    assert queued(redis)[0]["class"] == "HardJob"
    assert queued(redis, "other")[0]["class"] == "jobs.add"
    add(2, 3)
    assert redis.lrange("ran", 0, -1) == ["5"]


def test_set_overrides_options_per_call(redis):
    Shared.set(queue="critical", retry=False).perform_async(1, "x")
    (job,) = queued(redis, "critical")
    assert job["retry"] is False and job["queue"] == "critical"


def test_perform_in_and_at_write_the_schedule_without_enqueued_at(redis):
    before = time.time()
    jid = Record.perform_in(60, "later")
    Record.perform_at(1893456000.0, "far")
    entries = redis.zrange("schedule", 0, -1, withscores=True)
    assert len(entries) == 2
    text, score = entries[0]
    job = json.loads(text)
    assert job["jid"] == jid and "enqueued_at" not in job
    assert before + 59 < score < time.time() + 61
    assert entries[1][1] == 1893456000.0
    assert redis.llen("queue:default") == 0


def test_perform_at_in_the_past_enqueues_now(redis):
    Record.perform_at(time.time() - 10, "past")
    assert len(queued(redis)) == 1


def test_bulk_push_returns_jids_and_keeps_order(redis):
    jids = Record.perform_bulk([[i] for i in range(2500)])
    assert len(jids) == len(set(jids)) == 2500
    jobs = queued(redis)
    assert [j["args"][0] for j in reversed(jobs)] == list(range(2500))


def test_bulk_push_refuses_bad_items_before_pushing(redis):
    with pytest.raises(TypeError, match="item 1"):
        Record.perform_bulk([[1], (2,)])
    with pytest.raises(TypeError, match=r"item 1: args\[0\] is a builtins.set"):
        Record.perform_bulk([[1], [{2}]])
    assert redis.llen("queue:default") == 0


def test_unknown_option_is_refused():
    with pytest.raises(TypeError, match="unknown job option 'queeu'"):
        Record.set(queeu="x")
    with pytest.raises(TypeError, match="option 'retry'"):
        Record.set(retry="often")


def test_client_middleware_sees_and_can_stop_a_push(redis):
    chain = client.default().middleware
    seen = []

    def stop_secret(job_class, payload, queue, call_next):
        seen.append(queue)
        if payload["args"] == ["secret"]:
            return None
        payload["tags"] = ["checked"]
        return call_next()

    chain.add_client(stop_secret)
    try:
        assert Record.perform_async("secret") is None
        assert Record.perform_async("fine")
    finally:
        chain.client.remove(stop_secret)
    (job,) = queued(redis)
    assert job["args"] == ["fine"] and job["tags"] == ["checked"] and seen == ["default"] * 2


def test_configure_opens_no_connection(redis):
    forkq.configure(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(Exception, match="(?i)connect"):
        Record.perform_async(1)


def test_namespace_prefixes_every_key(redis, redis_url):
    forkq.configure(namespace="app1")
    Record.perform_async(1)
    assert redis.llen("app1:queue:default") == 1 and redis.llen("queue:default") == 0


def test_bulk_template_text_is_the_json_of_the_job_hash():
    now = 1764300000.125
    sample = client.build_payload(Shared, [], {"queue": "q", "retry": 2, "backtrace": True}, now)
    template = client.BulkTemplate(sample, now)
    args = [1, {"nested": ["x", None, 2.5]}, "ü"]
    expected = {**sample, "args": args, "jid": "f" * 24, "enqueued_at": now}
    text = template.render(args, "f" * 24)
    assert json.loads(text) == expected
    assert text == client._dumps(expected)
