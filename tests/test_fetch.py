"""Fetching against a real Redis: the private list, acknowledgement, release, batch sizes."""

import json

import pytest

from forkq.config import Queue
from forkq.connection import make_client
from forkq.fetch import Fetched, Fetcher, next_batch
from forkq.keys import Keys


def fetcher(redis_url, reliable=True, idle_plan=("high", "low")):
    queues = (Queue("high"), Queue("low"))
    return Fetcher(make_client(redis_url), Keys(), queues, True, "forkq:inflight:h:1:0:0",
                   reliable, 0, idle_plan)


def push(redis, queue, *values):
    redis.lpush(f"queue:{queue}", *[json.dumps({"v": v}) for v in values])


def test_reliable_fetch_moves_jobs_to_the_private_list_and_the_next_fetch_acks(redis, redis_url):
    push(redis, "low", "l1")
    push(redis, "high", "h1", "h2")
    take = fetcher(redis_url)
    take.batch = 3
    jobs = take.fetch()
    assert [(j.queue, json.loads(j.text)["v"]) for j in jobs] == [("high", "h1"), ("high", "h2"),
                                                                   ("low", "l1")]
    assert redis.lrange("forkq:inflight:h:1:0:0", 0, -1) == [j.text for j in jobs]
    take.counters.processed, take.counters.failed = 3, 1
    assert take.fetch() == []
    assert not redis.exists("forkq:inflight:h:1:0:0")
    assert redis.get("stat:processed") == "3" and redis.get("stat:failed") == "1"


def test_basic_fetch_keeps_no_private_list(redis, redis_url):
    push(redis, "high", "h1")
    assert len(fetcher(redis_url, reliable=False).fetch()) == 1
    assert not redis.exists("forkq:inflight:h:1:0:0")


def test_release_puts_unstarted_jobs_back_at_the_front_in_order(redis, redis_url):
    push(redis, "high", "a", "b", "c", "waiting")
    take = fetcher(redis_url)
    take.batch = 3
    a, b, c = take.fetch()
    take.release([b, c])
    assert [json.loads(t)["v"] for t in reversed(redis.lrange("queue:high", 0, -1))] == \
        ["b", "c", "waiting"]
    assert not redis.exists("forkq:inflight:h:1:0:0")


def test_release_can_keep_one_job_in_the_private_list(redis, redis_url):
    take = fetcher(redis_url)
    kept = Fetched("high", json.dumps({"v": "kept"}))
    redis.rpush("forkq:inflight:h:1:0:0", "done", kept.text)
    take.release([], keep=kept)
    assert redis.lrange("forkq:inflight:h:1:0:0", 0, -1) == [kept.text]


def test_idle_wait_blocks_on_one_queue_and_moves_the_job(redis, redis_url):
    push(redis, "high", "h1")
    (job,) = fetcher(redis_url, idle_plan=("high",)).wait()
    assert job.queue == "high" and redis.llen("forkq:inflight:h:1:0:0") == 1


@pytest.mark.parametrize("current, got, seconds_per_job, expected", [
    (1, 0, 0.0, 1),          # queues empty: stay at one
    (4, 3, 0.00001, 1),      # came back short: back to one
    (1, 1, 0.00001, 2),      # full and fast: double
    (8, 8, 0.00001, 10),     # capped by MAX_BATCH
    (4, 4, 0.002, 2),        # 2 ms jobs: at most 5 ms of work held
    (1, 1, 0.010, 1),        # slow jobs go one by one
    (2, 2, 0.0, 4),          # no timing yet: by count alone
])
def test_batch_size_adapts_to_queue_depth_and_job_duration(current, got, seconds_per_job, expected):
    assert next_batch(current, got, seconds_per_job) == expected
