"""Workflows (batches, chains, chords, child batches) in the cluster layout, on a real Redis
Cluster of 3 primaries and 3 replicas (``cluster_nodes.py``): a batch tree in one slot of its
own, members on queues of other primaries, each member's end in ordered steps
(``flow/batch_cluster.py``), and a kill -9 of a ``forkq start`` child mid-batch."""

from __future__ import annotations

import json
import os
import signal

import pytest

import forkq
from batch_jobs import (Add, Callback, Doomed, Listed, Mul, Parent, Record, Slowish,
                        Spawner)
from forkq import client as forkq_client
from forkq.api import Api
from forkq.flow import batch_cluster
from forkq.keys import ClusterKeys
from helpers import wait_for
from test_cluster import cluster_master  # noqa: F401 (the fixture)
from test_cluster_locks import queues_on_two_primaries

KEYS = ClusterKeys()


def events(redis, bid: str) -> list[str]:
    fired = [json.loads(text) for text in redis.lrange("batch:callbacks", 0, -1)]
    return sorted(event for b, event, _ in fired if b == bid)


def test_a_batch_over_two_primaries_fires_success_and_complete_once(cluster, start_worker):
    redis = forkq_client.default().redis
    one, two = queues_on_two_primaries(redis)
    with forkq.batch(on_success=Callback, on_complete=Callback, callback_queue=one,
                     data={"u": 7}) as b:
        for index in range(10):
            Record.set(queue=(one, two)[index % 2]).perform_async(index)
        Spawner.set(queue=two).perform_async(2)  # reopens the batch: 2 jobs more, to default
    assert redis.zrange(KEYS.batches, 0, -1) == [b.bid]
    start_worker(redis_url=cluster.url, queues=[one, two, "default"])
    wait_for(lambda: events(redis, b.bid) == ["complete", "success"], 10, message="callbacks")
    status = forkq.batch_status(b.bid)
    assert (status.total, status.pending, status.failures) == (13, 0, 0) and status.success
    wait_for(lambda: redis.llen(KEYS.queue(one)) == 0, 5, message="callbacks ran")
    assert events(redis, b.bid) == ["complete", "success"]  # once each
    assert redis.zcard(KEYS.batches) == 0 and Api(redis, KEYS).batches.page() == []
    wait_for(lambda: redis.hget(KEYS.batch(b.bid), "firing_success") is None, 10,
             message="the firing mark cleared")


def test_a_dead_member_fires_death_and_complete_never_success(cluster, start_worker):
    redis = forkq_client.default().redis
    one, two = queues_on_two_primaries(redis)
    with forkq.batch(on_success=Callback, on_complete=Callback, on_death=Callback) as b:
        Record.set(queue=one).perform_async(1)
        dead = Doomed.set(queue=two).perform_async()
    start_worker(redis_url=cluster.url, queues=[one, two])
    wait_for(lambda: events(redis, b.bid) == ["complete", "death"], 10, message="callbacks")
    status = forkq.batch_status(b.bid)
    assert status.dead_jids == [dead] and not status.success and status.pending == 1
    assert redis.zcard(KEYS.dead) == 1
    (listed,) = Api(redis, KEYS).batches.page()  # open: never succeeds
    assert listed.bid == b.bid and listed.dead_jids == [dead]


def test_a_malformed_member_is_buried_and_counted_dead(cluster, start_worker):
    redis = forkq_client.default().redis
    one, two = queues_on_two_primaries(redis)
    with forkq.batch(on_success=Callback, on_complete=Callback, on_death=Callback) as b:
        Record.set(queue=one).perform_async(1)
        spoiled = Record.set(queue=two).perform_async(2)
    job = json.loads(redis.lpop(KEYS.queue(two)))
    redis.rpush(KEYS.queue(two), json.dumps({**job, "args": "2"}))  # a producer's slip
    start_worker(redis_url=cluster.url, queues=[one, two])
    wait_for(lambda: events(redis, b.bid) == ["complete", "death"], 10, message="callbacks")
    status = forkq.batch_status(b.bid)
    assert status.dead_jids == [spoiled] and not status.success
    assert "'args' is string, not a list" in status.failed_jids[spoiled]
    (buried,) = [json.loads(text) for text in redis.zrange(KEYS.dead, 0, -1)]
    assert buried["class"] == "forkq.MalformedJob"


def test_a_death_callback_is_pushed_once_its_member_is_in_the_dead_set(cluster, start_worker,
                                                                        monkeypatch):
    redis = forkq_client.default().redis
    one, two = queues_on_two_primaries(redis)
    dead_at_push = []
    push = batch_cluster.send_commands

    def watched(client, commands):
        if any(command[0] == "LPUSH" for command in commands):
            dead_at_push.append(client.zcard(KEYS.dead))
        return push(client, commands)

    monkeypatch.setattr(batch_cluster, "send_commands", watched)
    with forkq.batch(on_death=Callback, callback_queue=one) as b:
        Doomed.set(queue=two).perform_async()
    start_worker(redis_url=cluster.url, queues=[one, two])
    wait_for(lambda: events(redis, b.bid) == ["death"], 10, message="the death callback")
    assert dead_at_push == [1]


def test_a_chain_runs_in_order_across_queues(cluster, start_worker):
    redis = forkq_client.default().redis
    one, two = queues_on_two_primaries(redis)
    jid = forkq.chain(Add.s(1, 2, queue=one), Mul.s(10, queue=two),
                      Add.s(0.5, queue=one)).perform_async()
    start_worker(redis_url=cluster.url, queues=[one, two])
    result = forkq.result(jid, wait=10)
    assert result.status == "succeeded" and result.value == 30.5


def test_a_chords_callback_gets_the_header_values(cluster, start_worker):
    redis = forkq_client.default().redis
    one, two = queues_on_two_primaries(redis)
    header = [Mul.s(i, i, queue=(one, two)[i % 2]) for i in range(6)]
    jid = forkq.chord(header, Listed.s("x", queue=two)).perform_async()
    start_worker(redis_url=cluster.url, queues=[one, two])
    result = forkq.result(jid, wait=10)
    assert result.value == {"values": [0, 1, 4, 9, 16, 25], "extra": ["x"]}


def test_child_batches_share_their_roots_slot_and_succeed_before_it(cluster, start_worker):
    redis = forkq_client.default().redis
    one, two = queues_on_two_primaries(redis)
    with forkq.batch(on_success=Callback, on_complete=Callback) as b:
        Parent.set(queue=one).perform_async(3)  # opens a child batch while it runs
        with forkq.batch(on_success=Callback) as inner:  # committed with its parent
            Record.set(queue=two).perform_async("inner")
    assert inner.bid.startswith(b.bid + ".")
    assert redis.keyslot(KEYS.batch(inner.bid)) == redis.keyslot(KEYS.batch(b.bid))
    start_worker(redis_url=cluster.url, queues=[one, "default", two])
    # callbacks are jobs: a child's may run after its parent's, so wait for all five
    wait_for(lambda: redis.llen("batch:callbacks") == 5, 15, message="the five callbacks")
    fired = [json.loads(text)[:2] for text in redis.lrange("batch:callbacks", 0, -1)]
    child = next(bid for bid, _ in fired if bid not in (b.bid, inner.bid))
    assert forkq.batch_status(child).parent == b.bid == forkq.batch_status(inner.bid).parent
    assert child.startswith(b.bid + ".")
    assert sorted(map(tuple, fired)) == sorted([
        (b.bid, "complete"), (b.bid, "success"), (inner.bid, "success"),
        (child, "complete"), (child, "success")])


def test_a_member_that_crashed_after_its_count_pushes_the_callback_when_it_runs_again(
        cluster, start_worker):
    """Step 2 done, then the process died: the job, recovered, runs again and its end hands
    back the callback its first count marked."""
    redis = forkq_client.default().redis
    with forkq.batch(on_success=Callback) as b:
        jid = Record.perform_async("once")
    due = batch_cluster._count(redis, KEYS, batch_cluster.COUNT_SUCCESS, b.bid, jid,
                               ["", "null", ""])
    # fired (complete has no callback) and not pushed
    assert [(row[1], bool(row[2])) for row in due] == [("complete", False), ("success", True)]
    assert redis.llen(KEYS.queue("default")) == 1  # the job, as if recovered
    start_worker(redis_url=cluster.url, queues=["default"])
    wait_for(lambda: events(redis, b.bid) == ["success"], 10, message="the callback")
    # the mark is cleared by the member's last step, which may come after its callback ran
    wait_for(lambda: redis.hget(KEYS.batch(b.bid), "firing_success") is None, 10,
             message="the firing mark cleared")


def test_a_member_no_longer_held_counts_nothing_and_a_poison_member_is_buried(cluster):
    """Steps 1 and 5 of a member's end (``batch_cluster.py``), called as the worker calls
    them: a job taken back from its private list counts nothing; a poison job leaves its
    private list for the dead set in two steps, counted as dead, death and complete fired."""
    from forkq.flow import batch_scripts
    from forkq.worker.retry import Decision, Outcome

    redis = forkq_client.default().redis
    with forkq.batch(on_death=Callback, on_complete=Callback, on_success=Callback) as b:
        Record.perform_async(1)
    (text,) = redis.lrange(KEYS.queue("default"), 0, -1)
    payload, private = json.loads(text), KEYS.queue_inflight("default", "h:3:0", 0)
    assert batch_scripts.succeeded(redis, KEYS, payload, (private, text)) == 0
    assert forkq.batch_status(b.bid).pending == 1
    redis.delete(KEYS.queue("default"))
    redis.rpush(private, text)
    buried = json.dumps({**payload, "error_class": "PoisonJobError", "error_message": "x"})
    outcome = Outcome(Decision("dead"), buried, 2.0, bury=True)
    assert batch_scripts.failed(redis, KEYS, payload, outcome, [2.0, 0.0, 100],
                                source=(private, text)) == 1
    assert redis.zrange(KEYS.dead, 0, -1) == [buried] and redis.llen(private) == 0
    status = forkq.batch_status(b.bid)
    assert status.dead_jids == [payload["jid"]] and status.complete and not status.success
    assert sorted(json.loads(t)["args"][1] for t in redis.lrange(KEYS.queue("default"), 0, -1)) \
        == ["complete", "death"]
    assert batch_scripts.failed(redis, KEYS, payload, outcome, [2.0, 0.0, 100],
                                source=(private, text)) == 0  # gone: nothing again
    assert redis.llen(KEYS.queue("default")) == 2 and redis.zcard(KEYS.dead) == 1


@pytest.mark.slow
@pytest.mark.fault
def test_a_child_killed_mid_batch_loses_no_callback(cluster, cluster_master):  # noqa: F811
    redis = forkq_client.default().redis
    one, two = queues_on_two_primaries(redis)
    with forkq.batch(on_success=Callback, on_complete=Callback) as b:
        for index in range(300):
            Slowish.set(queue=(one, two)[index % 2]).perform_async(index)
    master = cluster_master(processes=1, concurrency=4, queues=[one, two],
                            require=["batch_jobs"])
    (pid,) = master.ready_pids(1)
    wait_for(lambda: redis.llen("batch:ran") >= 60, 20, message="60 runs")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: set(events(redis, b.bid)) == {"complete", "success"}, 30,
             message="both callbacks after the kill")
    status = forkq.batch_status(b.bid)
    assert (status.total, status.pending) == (300, 0)
    assert set(redis.lrange("batch:ran", 0, -1)) >= set(b.jids)


def test_the_batches_page_gauge_and_an_asyncio_commit(cluster, make_config):
    import asyncio

    from forkq import aio
    from forkq.metrics import collector
    from forkq.web.app import App
    from test_web import Browser

    async def in_async_block():
        try:
            async with forkq.batch(description="async <b>") as block:
                await aio.perform_async(Record, 1)
            return block
        finally:
            await aio.aclose()

    redis = forkq_client.default().redis
    block = asyncio.run(in_async_block())
    with forkq.batch() as done:
        pass  # succeeded at its commit: never listed
    assert forkq.batch_status(block.bid).total == 1 and redis.llen(KEYS.queue("default")) == 1
    assert forkq.batch_status(done.bid).success
    config = make_config(redis_url=cluster.url)
    browser = Browser(App(config, None, environ={}))
    listing = browser.get("/batches")
    assert listing.status == 200 and block.bid in listing.text and done.bid not in listing.text
    assert "async &lt;b&gt;" in browser.get(f"/batches/{block.bid}").text
    facts = collector.RedisReader(config).read()
    assert [family.samples[0].value for family in collector._redis_series(facts)
            if family.name == "forkq_batches_open"] == [1]


def test_members_with_a_priority_or_a_fair_key_wait_in_their_places_and_count(cluster,
                                                                                start_worker):
    redis = forkq_client.default().redis
    one, two = queues_on_two_primaries(redis)
    with forkq.batch(on_success=Callback) as b:
        Record.set(queue=one, priority=5).perform_async("urgent")
        Record.set(queue=two, fair_key="tenant-1").perform_async("fair")
        Record.set(queue=one).perform_async("plain")
    assert redis.llen(KEYS.level(one, 5)) == 1 and redis.llen(KEYS.tenant(two, "tenant-1")) == 1
    start_worker(redis_url=cluster.url, queues=[one, two])
    wait_for(lambda: events(redis, b.bid) == ["success"], 10, message="the success callback")
    assert forkq.batch_status(b.bid).total == 3
