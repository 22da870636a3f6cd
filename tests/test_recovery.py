"""Orphaned private lists: found, requeued to the front, poison jobs sent to dead."""

import json

from redis.client import NEVER_DECODE

import jobs  # noqa: F401 (registers the jobs these tests run)
from forkq.keys import Keys
from forkq.worker.recovery import Recovery, requeue_slots
from forkq.worker.services import Services
from helpers import wait_for


def job_text(value, jid):
    return json.dumps({"class": "jobs.Record", "args": [value], "jid": jid, "queue": "default",
                       "retry": True})


def recovery_for(make_config, slot="host:1:0"):
    config = make_config(concurrency=2)
    return Recovery(Services.build(config, config.redis_url, slot), death_handlers=[])


def orphan(redis, slot, texts, identity="gone:1:abc"):
    redis.hset("forkq:slots", slot, json.dumps({"identity": identity, "threads": 2}))
    for text in texts:
        redis.rpush(f"forkq:inflight:{slot}:1", text)


def test_dead_process_lists_are_recovered_by_a_running_worker(redis, start_worker):
    orphan(redis, "otherhost:9:0", [job_text("orphan", "a" * 24)])
    redis.lpush("queue:default", job_text("queued", "b" * 24))
    start_worker(concurrency=1, heartbeat_ttl=1)
    wait_for(lambda: sorted(redis.lrange("ran", 0, -1)) == ["orphan", "queued"], timeout=10)
    wait_for(lambda: not redis.hexists("forkq:slots", "otherhost:9:0"),
             message="the dead slot forgotten")


def test_live_process_lists_are_left_alone(redis, make_config):
    redis.hset("alive:1:abc", "beat", 1)
    orphan(redis, "otherhost:9:0", [job_text("busy", "a" * 24)], identity="alive:1:abc")
    assert recovery_for(make_config).scan() == 0
    assert redis.llen("forkq:inflight:otherhost:9:0:1") == 1


def test_recovered_jobs_go_to_the_front_in_their_original_order(redis, make_config):
    redis.lpush("queue:default", "waiting")
    orphan(redis, "h:2:0", [job_text(1, "1" * 24), job_text(2, "2" * 24)])
    assert recovery_for(make_config).scan() == 2
    queue = redis.lrange("queue:default", 0, -1)
    assert queue[0] == "waiting"
    assert [json.loads(t)["args"] for t in reversed(queue[1:])] == [[1], [2]]
    assert all(json.loads(t)["forkq_isolate"] for t in queue[1:])


def test_a_job_recovered_more_than_three_times_is_poison(redis, make_config):
    recovery = recovery_for(make_config)
    text = job_text("poison", "p" * 24)
    for attempt in range(3):
        redis.rpush("forkq:inflight:h:3:0:0", text)
        assert recovery.recover_list("forkq:inflight:h:3:0:0") == 1
        assert redis.rpop("queue:default") == text
    redis.rpush("forkq:inflight:h:3:0:0", text)
    recovery.recover_list("forkq:inflight:h:3:0:0")
    assert redis.llen("queue:default") == 0
    dead = json.loads(redis.zrange("dead", 0, -1)[0])
    assert dead["jid"] == "p" * 24 and dead["error_class"] == "forkq.errors.PoisonJobError"
    assert "died while running it 4 times within 72 hours" in dead["error_message"]
    assert 0 < redis.ttl("forkq:recovered:" + "p" * 24) <= 72 * 3600


def test_batch_members_are_not_charged(redis, make_config):
    recovery = recovery_for(make_config)
    for _ in range(5):
        redis.rpush("forkq:inflight:h:4:0:0", job_text(1, "1" * 24), job_text(2, "2" * 24))
        recovery.recover_list("forkq:inflight:h:4:0:0")
        redis.delete("queue:default")
    assert redis.zcard("dead") == 0 and not redis.exists("forkq:recovered:" + "1" * 24)


def test_isolated_job_runs_alone_and_releases_its_batch(redis, start_worker):
    isolated = json.loads(job_text("alone", "i" * 24))
    isolated["forkq_isolate"] = True
    # Fetch order (right end first): batches of 1, 2 and 4 put "alone" first in the third.
    names = ["n1", "n2", "n3", "alone"] + [f"n{i}" for i in range(4, 10)]
    texts = [json.dumps(isolated) if n == "alone" else job_text(n, n.ljust(24, "0")) for n in names]
    redis.lpush("queue:default", *texts)
    start_worker(concurrency=1)
    wait_for(lambda: redis.get("stat:processed") == "10" and redis.llen("queue:default") == 0)
    assert sorted(redis.lrange("ran", 0, -1)) == sorted(names)


def test_replacement_in_the_same_slot_recovers_at_boot(redis, make_config):
    orphan(redis, "h:5:1", [job_text("mine", "m" * 24)], identity="h:5:old")
    redis.set("h:5:old", "still beating")
    recovery = recovery_for(make_config, slot="h:5:1")
    assert recovery.claim_slot() == 1
    assert json.loads(redis.lindex("queue:default", -1))["args"] == ["mine"]
    assert json.loads(redis.hget("forkq:slots", "h:5:1"))["identity"] == recovery.context.identity


def test_requeue_slots_pushes_jobs_to_the_front_of_their_queues_and_forgets_the_slots(redis):
    keys = Keys()
    redis.rpush("queue:default", '{"jid":"waiting","queue":"default"}')
    redis.hset(keys.slots, "h:1:0", json.dumps({"identity": "h:1:x", "threads": 3}))
    # A private list holds jobs in fetch order (RPUSH): the first fetched must run first again.
    redis.rpush(keys.inflight("h:1:0", 2), '{"jid":"a","queue":"default"}',
                '{"jid":"b","queue":"default"}')
    redis.rpush(keys.inflight("h:1:1", 0), '{"jid":"c","queue":"low"}', "not json")
    moved = requeue_slots(redis, keys, ["h:1:0", "h:1:1"], threads=1)
    assert moved == 4
    # Consumers take from the right: "not json" runs next, then a, then b, then "waiting".
    assert redis.lrange("queue:default", 0, -1) == [
        '{"jid":"waiting","queue":"default"}', '{"jid":"b","queue":"default"}',
        '{"jid":"a","queue":"default"}', "not json"]
    assert redis.lrange("queue:low", 0, -1) == ['{"jid":"c","queue":"low"}']
    assert redis.keys("forkq:inflight:*") == [] and redis.hlen(keys.slots) == 0


def test_a_poison_job_moves_to_dead_in_one_write(redis, make_config):
    recovery = recovery_for(make_config)
    text = job_text("poison", "q" * 24)
    for _ in range(3):
        redis.rpush("forkq:inflight:h:3:0:0", text)
        recovery.recover_list("forkq:inflight:h:3:0:0")
        redis.delete("queue:default")
    redis.config_resetstat()
    redis.rpush("forkq:inflight:h:3:0:0", text)
    recovery.recover_list("forkq:inflight:h:3:0:0")
    # one ZADD charges the recovery, one buries the job
    assert redis.info("commandstats")["cmdstat_zadd"]["calls"] == 2
    assert redis.zcard("dead") == 1 and not redis.exists("forkq:inflight:h:3:0:0")


def test_a_list_holding_bytes_that_are_not_utf8_is_recovered(redis, make_config):
    bad = b'{"class":"jobs.Record","args":["\xff"],"queue":"low"}'
    orphan(redis, "h:6:0", [job_text("fine", "e" * 24)])
    redis.rpush("forkq:inflight:h:6:0:1", bad)
    assert recovery_for(make_config).scan() == 2
    assert redis.llen("queue:default") == 1
    assert redis.execute_command("LRANGE", "queue:low", 0, -1, **{NEVER_DECODE: True}) == [bad]


def test_both_private_lists_of_a_thread_are_recovered(redis, make_config):
    keys = Keys()
    redis.hset(keys.slots, "h:7:0", json.dumps({"identity": "gone:7:x", "threads": 1}))
    redis.rpush(keys.inflight("h:7:0", 0, side=1), job_text("alt", "a" * 24))
    assert recovery_for(make_config).scan() == 1
    assert json.loads(redis.lindex("queue:default", 0))["args"] == ["alt"]
    redis.rpush(keys.inflight("h:8:0", 0, side=1), job_text("swept", "b" * 24))
    redis.hset(keys.slots, "h:8:0", json.dumps({"identity": "h:8:x", "threads": 1}))
    assert requeue_slots(redis, keys, ["h:8:0"], threads=1) == 1


def test_the_event_loops_list_is_recovered_charged_and_swept(redis, make_config):
    keys = Keys()
    texts = [job_text(n, str(n) * 24) for n in (1, 2)]
    redis.rpush(keys.inflight_async("h:9:0"), *texts)
    recovery = recovery_for(make_config, slot="h:9:0")
    assert recovery.claim_slot() == 2
    assert redis.lrange("queue:default", 0, -1) == texts[::-1]
    # every job of the loop's list had started: each is charged, none marked for isolation
    assert redis.exists("forkq:recovered:" + "1" * 24, "forkq:recovered:" + "2" * 24) == 2
    redis.rpush(keys.inflight_async("h:9:1"), texts[0])
    redis.hset(keys.slots, "h:9:1", json.dumps({"identity": "h:9:x", "threads": 1}))
    assert requeue_slots(redis, keys, ["h:9:1"], threads=1) == 1
    assert redis.keys("forkq:inflight:*") == []
