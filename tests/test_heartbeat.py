"""The heartbeat's keys, as Sidekiq's API and web UI read them, and remote signals."""

import json
import logging
import time

import jobs
from async_jobs import Gated, GatedThreaded
from helpers import wait_for


def test_first_beat_is_written_at_start(redis, start_worker):
    worker = start_worker(heartbeat_interval=30, tag="billing", labels=["blue"],
                          queues=[["a", 2], ["b", 1]])
    identity = worker.services.identity
    assert redis.smembers("processes") == {identity}
    entry = redis.hgetall(identity)
    info = json.loads(entry["info"])
    assert info["identity"] == identity and info["tag"] == "billing" and info["labels"] == ["blue"]
    assert info["queues"] == ["a", "b"] and info["weights"] == [{"a": 2, "b": 1}]
    assert info["concurrency"] == 3 and info["pid"] > 0 and info["hostname"]
    assert info["capsules"] == {"default": {"concurrency": 3, "mode": "weighted",
                                            "weights": {"a": 2, "b": 1}}}
    assert entry["concurrency"] == "3"  # Sidekiq 8.1.2+ reads only this one
    assert entry["busy"] == "0" and entry["quiet"] == "false" and int(entry["rss"]) > 1000
    assert entry["coroutines"] == "0" and info["async_concurrency"] == 100
    assert float(entry["beat"]) > time.time() - 5 and int(entry["rtt_us"]) > 0
    assert 0 < redis.ttl(identity) <= 60


def test_capsule_of_strict_and_equal_weight_queues(redis, start_worker):
    """Sidekiq 8.0.9+ ``Capsule#to_h``: strict queues weigh 0, all-ones is ``random``."""
    strict = start_worker(queues=["a", "b"])
    equal = start_worker(queues=[["a", 1], ["b", 1]])
    capsules = [json.loads(redis.hget(w.services.identity, "info"))["capsules"]
                for w in (strict, equal)]
    assert capsules == [
        {"default": {"concurrency": 3, "mode": "strict", "weights": {"a": 0, "b": 0}}},
        {"default": {"concurrency": 3, "mode": "random", "weights": {"a": 1, "b": 1}}}]


def test_busy_and_work_show_running_jobs(redis, start_worker):
    jobs.gate.clear()
    worker = start_worker()
    identity = worker.services.identity
    jid = jobs.wait_for_gate.perform_async("w")
    try:
        wait_for(lambda: redis.hget(identity, "busy") == "1")
        for key in (f"{identity}:work", f"{identity}:workers"):
            (entry,) = redis.hvals(key)
            work = json.loads(entry)
            assert work["queue"] == "default" and isinstance(work["run_at"], int)
            assert json.loads(work["payload"])["jid"] == jid
    finally:
        jobs.gate.set()
    wait_for(lambda: redis.hget(identity, "busy") == "0")
    assert redis.hlen(f"{identity}:work") == 0


def test_busy_counts_every_running_job_and_coroutines_the_coroutine_ones(redis, start_worker):
    for _ in range(4):
        Gated.perform_async()
    worker = start_worker(concurrency=2, async_concurrency=3, heartbeat_interval=0.2)
    identity = worker.services.identity
    wait_for(lambda: redis.hget(identity, "coroutines") == "3", 10,
             message="three coroutine jobs running, one waiting for a running slot")
    GatedThreaded.perform_async()
    wait_for(lambda: redis.hmget(identity, "busy", "coroutines") == ["4", "3"], 10,
             message="the thread job counted in busy, not in coroutines")
    assert redis.hlen(f"{identity}:work") == 4
    snapshot = worker.snapshot()
    assert (snapshot.busy, snapshot.coroutines, snapshot.async_concurrency) == (4, 3, 3)
    redis.set("async:gate", 1)
    wait_for(lambda: redis.hlen("async:runs") == 5, 10, message="every gated job ended")
    wait_for(lambda: redis.hmget(identity, "busy", "coroutines") == ["0", "0"], 10)


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_remote_ttin_and_term(redis, start_worker):
    worker = start_worker()
    identity = worker.services.identity
    collect = Collect()
    logging.getLogger("forkq").addHandler(collect)
    try:
        redis.lpush(f"{identity}-signals", "TTIN")
        wait_for(lambda: any(line.startswith("thread processor-0") for line in collect.lines),
                 message="a stack dump of every thread")
    finally:
        logging.getLogger("forkq").removeHandler(collect)
    redis.lpush(f"{identity}-signals", "TERM")
    wait_for(lambda: identity not in redis.smembers("processes"), timeout=10)
    assert not redis.exists(identity)
