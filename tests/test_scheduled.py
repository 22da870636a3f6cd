"""Moving due jobs from schedule and retry: exactly once, enqueued_at spliced into the text."""

import json
import threading
import time

import pytest

from forkq import scheduled
from forkq.worker import Context


def poller(make_config):
    config = make_config()
    return scheduled.Poller(Context(config, config.redis_url, "t:1:0"), recovery=None)


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
