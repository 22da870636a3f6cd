"""Fetching against a real Redis: the private list, acknowledgement, release, batch sizes."""

import json
import threading

import pytest

import redis as redis_py

from forkq.config import Queue
from forkq.connection import make_client
from forkq.worker.fetch import RELEASE_SCRIPT, Fetched, Fetcher, FetchMode, next_batch
from forkq.worker.ordering import HEAD, QueueOrder
from forkq.keys import Keys
from forkq.flow.cancel import CancelView
from forkq.flow.pause import PausedView
from forkq.flow.placement import PlacementView
from helpers import lose_next_reply

LISTS = Keys().inflight_pair("h:1:0", 0)


def fetcher(redis_url, reliable=True, idle_plan=("high", "low")):
    queues = QueueOrder((Queue("high"), Queue("low")), strict=True)
    mode = FetchMode.RELIABLE if reliable else FetchMode.BASIC
    return Fetcher(make_client(redis_url), Keys(), queues=queues, mode=mode, lists=LISTS,
                   thread_index=0, idle_plan=idle_plan, paused=PausedView(),
                   cancels=CancelView(), placement=PlacementView())


def held(redis):
    return {key: redis.lrange(key, 0, -1) for key in LISTS if redis.exists(key)}


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
    assert held(redis) == {take.private_key: [j.text for j in jobs]}
    take.counters.processed, take.counters.failed = 3, 1
    assert take.fetch() == []
    assert held(redis) == {}
    assert redis.get("stat:processed") == "3" and redis.get("stat:failed") == "1"


def test_basic_fetch_keeps_no_private_list(redis, redis_url):
    push(redis, "high", "h1")
    assert len(fetcher(redis_url, reliable=False).fetch()) == 1
    assert held(redis) == {}


def test_release_puts_unstarted_jobs_back_at_the_front_in_order(redis, redis_url):
    push(redis, "high", "a", "b", "c", "waiting")
    take = fetcher(redis_url)
    take.batch = 3
    a, b, c = take.fetch()
    take.release([b, c])
    assert [json.loads(t)["v"] for t in reversed(redis.lrange("queue:high", 0, -1))] == \
        ["b", "c", "waiting"]
    assert held(redis) == {}


def test_release_can_keep_one_job_in_the_private_list(redis, redis_url):
    take = fetcher(redis_url)
    kept = Fetched("high", json.dumps({"v": "kept"}))
    redis.rpush(take.private_key, "done", kept.text)
    take.release([], keep=kept)
    assert held(redis) == {take.private_key: [kept.text]}


def test_idle_wait_blocks_on_one_queue_and_moves_the_job(redis, redis_url):
    push(redis, "high", "h1")
    take = fetcher(redis_url, idle_plan=("high",))
    (job,) = take.wait(threading.Event())
    assert job.queue == "high" and held(redis) == {take.private_key: [job.text]}


def test_a_payload_that_is_not_utf8_spoils_only_itself(redis, redis_url):
    bad = b'{"class":"J","args":["\xff"]}'
    redis.lpush("queue:high", json.dumps({"v": 1}), bad, json.dumps({"v": 2}))
    take = fetcher(redis_url, idle_plan=("high",))
    take.batch = 3
    assert [j.text for j in take.fetch()] == ['{"v": 1}', bad, '{"v": 2}']
    take.release([])
    redis.lpush("queue:high", bad)
    assert [j.text for j in take.wait(threading.Event())] == [bad]


def lose_next_fetch_reply(take):
    """The next fetch runs in Redis, but its reply never reaches the thread."""
    take._connection = take.redis.connection_pool.get_connection()
    lose_next_reply(take._connection)


def test_a_fetch_whose_reply_was_lost_is_adopted_not_deleted(redis, redis_url):
    push(redis, "high", "a", "b", "c")
    take = fetcher(redis_url)
    take.batch = 2
    first = take.fetch()
    lose_next_fetch_reply(take)
    with pytest.raises(redis_py.ConnectionError):
        take.fetch()
    assert redis.llen("queue:high") == 0, "the fetch ran although its reply was lost"
    adopted = take.fetch()
    assert [json.loads(j.text)["v"] for j in adopted] == ["c"] and adopted[0].queue == "default"
    assert held(redis) == {take.private_key: [adopted[0].text]}
    assert [j.text for j in first] not in held(redis).values()
    assert take.fetch() == [] and held(redis) == {}


def test_a_lost_fetch_that_never_ran_acknowledges_the_finished_batch(redis, redis_url):
    push(redis, "high", "a")
    take = fetcher(redis_url)
    take.fetch()
    take.unknown, take.side = True, 1 - take.side
    assert take.fetch() == [] and held(redis) == {}


def fail_next_call(client, ran: bool):
    """The client's next command fails with a lost connection, after running (``ran``) or
    before reaching Redis."""
    execute, parse = client.execute_command, client.parse_response

    def parse_then_lose(*args, **options):
        parse(*args, **options)
        raise redis_py.ConnectionError("connection lost before the reply")

    def lose_before_sending(*args, **options):
        raise redis_py.ConnectionError("connection lost before sending")

    if ran:
        client.parse_response = parse_then_lose
    else:
        client.execute_command = lose_before_sending
    return lambda: (setattr(client, "parse_response", parse),
                    setattr(client, "execute_command", execute))


def test_an_idle_wait_that_lost_its_reply_is_adopted_when_called_again(redis, redis_url):
    push(redis, "high", "moved", "next")
    take = fetcher(redis_url, idle_plan=("high",))
    restore = fail_next_call(take.redis, ran=True)
    with pytest.raises(redis_py.ConnectionError):
        take.wait(threading.Event())
    restore()
    # the processor calls the wait again once Redis answers (``processor._retrying``)
    (adopted,) = take.wait(threading.Event())
    assert json.loads(adopted.text)["v"] == "moved"
    assert held(redis) == {take.private_key: [adopted.text]}
    assert [json.loads(t)["v"] for t in redis.lrange("queue:high", 0, -1)] == ["next"]


@pytest.mark.parametrize("ran", [True, False])
def test_a_release_that_lost_its_reply_loses_no_job(redis, redis_url, ran):
    redis.lpush("queue:high", *[json.dumps({"v": v, "queue": "high"}) for v in "abc"])
    take = fetcher(redis_url)
    take.redis.script_load(RELEASE_SCRIPT)
    take.batch = 3
    a, b, c = take.fetch()
    restore = fail_next_call(take.redis, ran)
    with pytest.raises(redis_py.ConnectionError):
        take.release([b, c])
    restore()
    take.release([b, c])
    queued = [json.loads(t)["v"] for t in reversed(redis.lrange("queue:high", 0, -1))]
    # Not knowing whether the first release ran, the thread pushes back what is still held.
    assert queued == (["b", "c"] if ran else ["a", "b", "c"]) and held(redis) == {}


def test_release_is_idempotent(redis, redis_url):
    push(redis, "high", "a", "b")
    take = fetcher(redis_url)
    take.batch = 2
    a, b = take.fetch()
    assert take.release([b]) == 1
    assert take.release([b]) == 0
    assert redis.lrange("queue:high", 0, -1) == [b.text] and held(redis) == {}


@pytest.mark.parametrize("current, got, seconds_per_job, expected", [
    (1, 0, 0.0, 1),          # queues empty: stay at one
    (4, 3, 0.00001, 1),      # came back short: back to one
    (1, 1, 0.00001, 2),      # full and fast: double
    (8, 8, 0.00001, 10),     # capped by MAX_BATCH
    (4, 4, 0.008, 2),        # 8 ms jobs: at most 20 ms of work held
    (1, 1, 0.040, 1),        # slow jobs go one by one
    (2, 2, 0.0, 4),          # no timing yet: by count alone
])
def test_batch_size_adapts_to_queue_depth_and_job_duration(current, got, seconds_per_job, expected):
    assert next_batch(current, got, seconds_per_job) == expected


def test_with_many_queues_a_job_beyond_the_first_ones_is_taken_by_one_fetch(redis, redis_url):
    names = [f"q{index}" for index in range(HEAD * 3)]
    push(redis, names[-1], "last")
    take = Fetcher(make_client(redis_url), Keys(),
                   queues=QueueOrder(tuple(Queue(name) for name in names), strict=True),
                   mode=FetchMode.RELIABLE, lists=LISTS, thread_index=0,
                   idle_plan=tuple(names), paused=PausedView(), cancels=CancelView(),
                   placement=PlacementView())
    jobs = take.fetch()
    assert [(j.queue, json.loads(j.text)["v"]) for j in jobs] == [(names[-1], "last")]
    assert held(redis) == {take.private_key: [jobs[0].text]}
