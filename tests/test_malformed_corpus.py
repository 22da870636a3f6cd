"""A corpus of bad payloads among good jobs, through real masters and workers.

Pushed raw, as a buggy producer in another language would, into several queues and into
``schedule`` and ``retry``: every good job runs exactly once, every malformed payload is in the
dead set with its raw text and a reason, every worker is still the one that started, and no
private list is left holding anything. Run with reliable and with basic fetch.
"""

from __future__ import annotations

import base64
import collections
import json

import pytest

from helpers import wait_for
from masters import inflight_keys

QUEUES = ["high", "low", "default"]
GOOD_PER_GAP = 8

#: (payload, words of the reason the dead set must give)
MALFORMED = [
    (b'{"class":"e2e_jobs.Record","args":["\xff\xfe"]}', "not UTF-8"),
    ("\ufeff".encode("utf-16-le") + b'{"class":"e2e_jobs.Record","args":[]}', "not UTF-8"),
    ('{"class":"e2e_jobs.Record","args":' + "[" * 100_000 + "]" * 100_000 + "}", "deeper"),
    ('{"class":"e2e_jobs.Record","args":{}}', "'args' is dict"),
    ('{"class":"e2e_jobs.Record","args":"1,2"}', "'args' is string"),
    ('{"class":"e2e_jobs.Record","args":null}', "'args' is null"),
    ('{"class":"e2e_jobs.Record"}', "'args' is null"),
    ('{"class":5,"args":[]}', "'class' is int"),
    ('{"class":"","args":[]}', "'class' is an empty string"),
    ('{"class":["e2e_jobs.Record"],"args":[]}', "'class' is list"),
    ('{"args":[]}', "no 'class'"),
    ('{"class":"e2e_jobs.Record","args":[],"jid":{}}', "'jid' is dict"),
    ('{"class":"e2e_jobs.Record","args":[],"jid":123}', "'jid' is int"),
    ('{"class":"e2e_jobs.Record","args":[],"queue":[]}', "'queue' is list"),
    ('{"class":"e2e_jobs.Record","args":[],"queue":""}', "'queue' is an empty string"),
    ('{"class":"e2e_jobs.Record","args":[],"chain":"e2e_jobs.Record"}', "'chain' is string"),
    ('{"class":"e2e_jobs.Record","args":[],"bid":["b"]}', "'bid' is list"),
    ('{"class":"e2e_jobs.Record","args":[1', "not valid JSON"),
    ('{"class":"e2e_jobs.Record","args":[]} trailing', "not valid JSON"),
    ("\ufeff" + '{"class":"e2e_jobs.Record","args":[]}', "not valid JSON"),
    ('{"class":"e2e_jobs.Record","args":[' + "7" * 5000 + "]}", "not valid JSON"),
    ("", "not valid JSON"),
    ("null", "JSON null"),
    ("[1]", "JSON list"),
    ('"a job"', "JSON string"),
    ("42", "JSON int"),
]

#: odd fields that do not stop a job from running (they matter only when it fails)
ODD_BUT_RUNNABLE = [
    {"retry_count": "abc"}, {"retry": "yes"}, {"backtrace": "lots"}, {"retry": -1},
    {"retry": 10**30}, {"retry_queue": 5}, {"enqueued_at": "yesterday"},
]

#: malformed entries of the sorted sets (all due now)
MALFORMED_ENTRIES = [
    ("[1]", "JSON list"), (b'{"class":"e2e_jobs.Record","args":["\xff"]}', "not UTF-8"),
    ("not json", "not valid JSON"), ('{"args":[]}', "no 'class'"),
    ('{"class":"e2e_jobs.Record","args":{}}', "'args' is dict"),
]


def good_job(jid: str, queue: str, **fields) -> str:
    return json.dumps({"class": "e2e_jobs.Record", "args": [jid], "jid": jid, "queue": queue,
                       "retry": True, **fields})


def corpus() -> tuple[dict[str, list], list[str], collections.Counter, dict]:
    """Texts per queue (in push order), good jids, malformed raw payloads pushed (counted),
    and entries per sorted set."""
    per_queue, good, bad = {}, [], collections.Counter()
    for queue in QUEUES:
        texts = []
        for index, (raw, _) in enumerate(MALFORMED):
            for n in range(GOOD_PER_GAP):
                jid = f"{queue[0]}{index:03d}{n:020d}"
                odd = ODD_BUT_RUNNABLE[n] if n < len(ODD_BUT_RUNNABLE) else {}
                texts.append(good_job(jid, queue, **odd))
                good.append(jid)
            texts.append(raw)
            bad[raw] += 1
        per_queue[queue] = texts
    sets = {}
    for name in ("schedule", "retry"):
        entries = {raw: 0 for raw, _ in MALFORMED_ENTRIES}
        for n in range(10):
            jid = f"{name[0]}s{n:022d}"
            entries[good_job(jid, QUEUES[n % 3])] = 0
            good.append(jid)
        sets[name] = entries
    return per_queue, good, bad, sets


def raw_of(job: dict):
    raw = job["raw"]
    return base64.b64decode(raw) if job.get("raw_encoding") == "base64" else raw


@pytest.mark.slow
@pytest.mark.parametrize("fetch", ["reliable", "basic"])
def test_every_good_job_runs_once_and_every_bad_one_is_buried(redis, start_master, fetch):
    per_queue, good, bad, sets = corpus()
    master = start_master(fetch=fetch, queues=QUEUES, processes=2, concurrency=3)
    workers = set(master.ready_pids())
    for name, entries in sets.items():
        redis.zadd(name, entries)
    for queue, texts in per_queue.items():
        redis.lpush(f"queue:{queue}", *texts)
    bad_count = sum(bad.values()) + 2 * len(MALFORMED_ENTRIES)
    wait_for(lambda: redis.hlen("e2e:runs") == len(good) and redis.zcard("dead") == bad_count,
             timeout=60, message="good jobs run and bad ones buried")
    wait_for(lambda: not inflight_keys(redis), timeout=5, message="private lists acknowledged")

    runs = redis.hgetall("e2e:runs")
    assert sorted(runs) == sorted(good) and set(runs.values()) == {"1"}
    dead = [json.loads(text) for text in redis.zrange("dead", 0, -1)]
    assert all(job["class"] == "forkq.MalformedJob" for job in dead)
    buried = collections.Counter(raw_of(job) for job in dead
                                 if not job["error_message"].startswith("in "))
    assert buried == bad
    reasons = {(raw_of(job), job["error_message"]) for job in dead}
    for raw, words in MALFORMED:
        assert any(r == raw and words in message for r, message in reasons), words
    for name in ("schedule", "retry"):
        for raw, words in MALFORMED_ENTRIES:
            assert any(r == raw and message.startswith(f"in {name}: ") and words in message
                       for r, message in reasons), (name, words)
    assert redis.zcard("schedule") == redis.zcard("retry") == 0
    assert set(master.ready_pids()) == workers
