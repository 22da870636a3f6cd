"""Moving due jobs from schedule and retry: exactly once, enqueued_at spliced into the text."""

import base64
import json
import threading
import time

import pytest

from forkq.worker import poller as scheduled
from forkq.worker.services import Services
from helpers import LogLines, wait_for


def poller(make_config):
    config = make_config()
    return scheduled.Poller(Services.build(config, config.redis_url, "t:1:0"), recovery=None)


@pytest.mark.parametrize("rand, wait", [(0.0, 2.5), (0.5, 5.0), (0.999999, 7.5)])
def test_poll_wait_is_randomised_around_the_interval(rand, wait):
    assert scheduled.poll_wait(5.0, rand=lambda: rand) == pytest.approx(wait)


def test_due_jobs_move_to_their_queues_with_enqueued_at(redis, make_config):
    big = 12345678901234567890123
    text = '{"class":"J","queue":"q1","args":[%d,{"enqueued_at":1}],"jid":"x","zz":1}' % big
    redis.zadd("schedule", {text: time.time() - 1, '{"class":"K","queue":"q2","args":[]}': time.time() + 60})
    redis.zadd("retry", {'{"class":"R","args":[],"enqueued_at":5,"queue":"q1"}': 1})
    now = time.time()
    assert poller(make_config).enqueue_due(now=now) == 2
    moved = redis.lrange("queue:q1", 0, -1)
    assert set(redis.smembers("queues")) == {"q1"}
    assert str(big) in moved[1] and moved[1].endswith(',"jid":"x","zz":1}')
    assert json.loads(moved[1])["enqueued_at"] == now
    assert json.loads(moved[1])["args"][1] == {"enqueued_at": 1}
    assert moved[0] == '{"class":"R","args":[],"enqueued_at":%r,"queue":"q1"}' % now
    assert redis.zcard("schedule") == 1 and redis.zcard("retry") == 0


def test_several_pollers_move_each_job_exactly_once(redis, make_config):
    now = time.time()
    redis.zadd("schedule", {json.dumps({"class": "J", "args": [i], "queue": "q", "jid": str(i)}): now - 1
                            for i in range(3000)})
    pollers = [poller(make_config) for _ in range(4)]
    threads = [threading.Thread(target=p.enqueue_due) for p in pollers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    jids = [json.loads(t)["jid"] for t in redis.lrange("queue:q", 0, -1)]
    assert len(jids) == 3000 and len(set(jids)) == 3000


BAD_ENTRIES = [
    ("[1]", "JSON list, not an object"),
    ("not json", "not valid JSON"),
    ('{"args":[]}', "no 'class'"),
    ('{"class":"J","args":"x","queue":"q"}', "'args' is string"),
    (b'{"class":"J","args":["\xff"],"queue":"q"}', "not UTF-8"),
]


def dead_jobs(redis):
    return [json.loads(text) for text in redis.zrange("dead", 0, -1)]


def raw_of(job):
    return base64.b64decode(job["raw"]) if job.get("raw_encoding") == "base64" else job["raw"]


@pytest.mark.parametrize("sorted_set", ["schedule", "retry"])
def test_malformed_entries_go_to_dead_and_good_ones_still_move(redis, make_config, sorted_set):
    good = '{"class":"J","args":[1],"queue":"q"}'
    redis.zadd(sorted_set, {raw: 0 for raw, _ in BAD_ENTRIES})
    redis.zadd(sorted_set, {good: 1})
    assert poller(make_config).enqueue_due() == 1
    assert redis.zcard(sorted_set) == 0 and redis.llen("queue:q") == 1
    buried = {raw_of(job) if isinstance(raw_of(job), bytes) else raw_of(job): job
              for job in dead_jobs(redis)}
    for raw, reason in BAD_ENTRIES:
        assert reason in buried[raw]["error_message"]
        assert buried[raw]["error_message"].startswith(f"in {sorted_set}: ")


def test_a_top_level_enqueued_at_that_is_not_a_number_is_replaced_not_a_nested_one(
        redis, make_config):
    text = '{"class":"J","args":[{"enqueued_at":1}],"enqueued_at":"x","queue":"q"}'
    redis.zadd("schedule", {text: 0})
    assert poller(make_config).enqueue_due(now=5.0) == 1
    moved = json.loads(redis.lpop("queue:q"))
    assert moved["enqueued_at"] == 5.0 and moved["args"] == [{"enqueued_at": 1}]


def test_an_entry_the_splice_cannot_rewrite_moves_unchanged(redis, make_config):
    # The script must re-encode with cjson, which cannot encode 1e999 (inf).
    text = '{"class":"J","args":[{"enqueued_at":1}],"enqueued_at":"x","n":1e999,"queue":"q"}'
    redis.zadd("schedule", {text: 0})
    assert poller(make_config).enqueue_due() == 1
    assert redis.lrange("queue:q", 0, -1) == [text] and redis.zcard("schedule") == 0


def test_the_running_poller_buries_a_bad_entry_without_claiming_an_outage(redis, start_worker):
    with LogLines() as lines:
        start_worker()
        redis.zadd("schedule", {"[1]": 0})
        wait_for(lambda: redis.zcard("dead") == 1, timeout=5)
    assert redis.zcard("schedule") == 0
    assert dead_jobs(redis)[0]["raw"] == "[1]"
    assert not [line for line in lines if "Redis unavailable" in line]
