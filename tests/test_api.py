"""The admin API against a real Redis: queues, sets, processes, stats."""

from __future__ import annotations

import base64
import datetime
import json
import time
import zlib

import pytest
import redis as redis_py

import forkq
from forkq import api as forkq_api
from forkq.api import Api, Entry, Queue
from forkq.keys import Keys


class ApiJob(forkq.Job):
    options = {"queue": "mailers"}


def failed_job(jid: str, queue: str = "default", retry_count: int = 0, **extra) -> str:
    item = {"class": "tests.ApiJob", "args": [1, "two"], "jid": jid, "queue": queue,
            "retry": True, "created_at": 1700000000.5, "enqueued_at": 1700000001.0,
            "error_class": "ValueError", "error_message": "bad", "retry_count": retry_count,
            "failed_at": 1700000002.0, **extra}
    return json.dumps(item)


@pytest.fixture
def api(redis):
    return Api(redis, Keys(), dead_max_jobs=5, dead_timeout=3600.0)


def test_queue_size_latency_jobs_delete_clear(api, redis):
    jids = [ApiJob.perform_async(n) for n in range(3)]
    queue = api.queue("mailers")
    assert queue.size == 3
    assert [q.name for q in api.all_queues()] == ["mailers"]
    assert [e.jid for e in queue.jobs(0, 10)] == jids[::-1]
    assert 0.0 <= queue.latency < 5.0
    assert queue.delete(queue.jobs(0, 1)[0]) is True
    assert queue.size == 2
    queue.clear()
    assert queue.size == 0 and api.all_queues() == []


def test_latency_from_oldest_job_in_milliseconds(api, redis):
    thirty_seconds_ago_ms = int((time.time() - 30) * 1000)
    redis.lpush(api.keys.queue("q"), json.dumps({"jid": "a", "enqueued_at": thirty_seconds_ago_ms}))
    redis.lpush(api.keys.queue("q"), json.dumps({"jid": "b", "enqueued_at": time.time()}))
    assert 29.0 < api.queue("q").latency < 35.0


def test_module_level_queue_uses_the_client_redis(redis):
    ApiJob.perform_async(1)
    assert Queue("mailers").size == 1
    assert forkq_api.default().stats()["enqueued"] == 1


def test_entry_parses_fields_and_normalises_milliseconds():
    lines = ["app.py:1 in perform", "lib.py:9 in call"]
    encoded = base64.b64encode(zlib.compress(json.dumps(lines).encode())).decode()
    entry = Entry(failed_job("abc", retry_count=2, error_backtrace=encoded,
                             enqueued_at=1700000001500), 12.5)
    assert entry.jid == "abc" and entry.args == [1, "two"] and entry.queue == "default"
    assert entry.error_class == "ValueError" and entry.retry_count == 2
    assert entry.enqueued_at == pytest.approx(1700000001.5)
    assert entry.created_at == pytest.approx(1700000000.5)
    assert entry.backtrace == lines
    assert entry.key == "12.5-abc"


def test_malformed_entry_keeps_raw_text():
    entry = Entry("{not json", 3.0)
    assert entry.malformed and entry.jid is None and entry.args == []
    assert entry.raw == "{not json"
    assert entry.matches(entry.key.partition("-")[2])


def test_scheduled_page_find_add_to_queue(api, redis):
    jids = [ApiJob.perform_in(100 + n, n) for n in range(5)]
    scheduled = api.scheduled
    assert scheduled.size == 5
    assert [e.jid for e in scheduled.page(0, 3)] == jids[:3]
    assert [e.jid for e in scheduled.page(3, 3)] == jids[3:]
    entry = scheduled.find(jids[2])
    assert entry is not None and scheduled.get(entry.key).raw == entry.raw
    assert scheduled.add_to_queue(entry) is True
    assert scheduled.add_to_queue(entry) is False, "a second move must not push twice"
    assert scheduled.size == 4 and api.queue("mailers").size == 1
    moved = api.queue("mailers").jobs()[0]
    assert moved.jid == jids[2] and time.time() - moved.enqueued_at < 5


def test_retry_now_decrements_count_and_keeps_unknown_keys(api, redis):
    job = failed_job("r1", queue="critical", retry_count=3, custom={"x": 1})
    redis.zadd(api.keys.retry, {job: 10})
    retries = api.retries
    entry = retries.page()[0]
    assert retries.retry_now(entry) is True
    job = api.queue("critical").jobs()[0]
    assert job.retry_count == 2 and job.item["custom"] == {"x": 1}
    assert "critical" in {q.name for q in api.all_queues()}
    assert retries.size == 0


def test_kill_moves_to_dead_and_trims(api, redis):
    redis.zadd(api.keys.dead, {failed_job(f"old{n}"): time.time() - 7200 for n in range(3)})
    redis.zadd(api.keys.dead, {failed_job(f"d{n}"): time.time() - n for n in range(5)})
    redis.zadd(api.keys.retry, {failed_job("victim"): 5})
    assert api.retries.kill(api.retries.page()[0]) is True
    dead = api.dead
    assert dead.size == 5, "trimmed to dead_max_jobs and dead_timeout"
    assert dead.page(0, 1)[0].jid == "victim", "newest first"
    assert not any(e.jid.startswith("old") for e in dead.page(0, 10))


def test_delete_and_filter(api, redis):
    redis.zadd(api.keys.retry, {failed_job("a1", error_message="needle here"): 1,
                                failed_job("b2"): 2, "{broken": 3})
    retries = api.retries
    assert [e.jid for e in retries.filter("needle")] == ["a1"]
    assert [e.raw for e in retries.filter("{bro")] == ["{broken"]
    assert list(retries.filter("*")) == [], "glob characters are literal"
    broken = retries.get(next(retries.filter("{bro")).key)
    assert broken is not None and retries.delete(broken) is True
    assert retries.size == 2


def test_malformed_entries_are_left_by_retry_all(api, redis):
    redis.zadd(api.keys.dead, {"{broken": 1, failed_job("ok1"): 2, failed_job("ok2"): 3})
    assert api.dead.retry_all(batch=1) == 2
    assert api.dead.size == 1 and api.queue("default").size == 2


def test_all_actions_work_in_batches_over_100k_entries(api, redis):
    count = 100_000
    members = {f'{{"jid":"{n:024x}","class":"X","args":[],"queue":"bulk"}}': n
               for n in range(count)}
    pipe = redis.pipeline(transaction=False)
    items = list(members.items())
    for start in range(0, count, 10_000):
        pipe.zadd(api.keys.schedule, dict(items[start:start + 10_000]))
    pipe.execute()
    scheduled = api.scheduled
    assert scheduled.size == count
    assert scheduled.page(99_990, 25)[-1].jid == f"{count - 1:024x}"
    assert scheduled.find(f"{77_777:024x}").score == 77_777
    calls = []
    original = redis.zrange
    redis.zrange = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        assert scheduled.add_all_to_queue() == count
    finally:
        del redis.zrange
    assert len(calls) == count // forkq_api.BATCH, "one ZRANGE of a batch at a time"
    assert all(end - start < forkq_api.BATCH for _, start, end in calls)
    assert scheduled.size == 0 and api.queue("bulk").size == count
    redis.zadd(api.keys.dead, dict(items[:5000]))
    assert api.dead.clear() == 5000 and api.dead.size == 0


def test_processes_workers_and_prune(api, redis):
    identity = "host:123:abc"
    info = {"hostname": "host", "pid": 123, "tag": "app", "concurrency": 10,
            "queues": ["default"], "started_at": time.time() - 60, "identity": identity}
    redis.sadd(api.keys.processes, identity, "gone:1:def")
    redis.hset(api.keys.process(identity), mapping={
        "info": json.dumps(info), "busy": 1, "beat": time.time(), "quiet": "false",
        "rss": 51200, "rtt_us": 150})
    payload = failed_job("w1")
    redis.hset(api.keys.work(identity), "t1",
               json.dumps({"queue": "default", "payload": payload, "run_at": int(time.time())}))
    processes = api.processes()
    assert [p.identity for p in processes] == [identity]
    assert processes[0].busy == 1 and processes[0].rss_kb == 51200 and not processes[0].quiet
    assert processes[0].tag == "app" and processes[0].concurrency == 10
    assert processes[0].coroutines is None and processes[0].threads_busy == 1  # as Sidekiq wrote it
    assert redis.smembers(api.keys.processes) == {identity}, "expired identity pruned"
    [work] = api.workers()
    assert work.thread == "t1" and work.job.jid == "w1" and work.queue == "default"
    assert api.stats()["busy"] == 1 and api.stats()["processes"] == 1


def test_signal_pushes_with_ttl(api, redis):
    api.signal("host:1:a", "TSTP")
    assert redis.lrange(api.keys.signals("host:1:a"), 0, -1) == ["TSTP"]
    assert 0 < redis.ttl(api.keys.signals("host:1:a")) <= 60
    with pytest.raises(ValueError):
        api.signal("host:1:a", "KILL")


def test_the_api_sends_the_signals_a_worker_takes():
    """One list: what the API accepts is what the heartbeat hands to the worker (USR2 reopens
    its log files)."""
    from forkq import api
    from forkq.worker import heartbeat

    assert set(api.SIGNALS) == set(heartbeat.REMOTE_SIGNALS) == {"TSTP", "TERM", "TTIN", "USR2"}


def test_stats_and_history(api, redis):
    ApiJob.perform_async(1)
    ApiJob.perform_in(60, 2)
    redis.set(api.keys.stat("processed"), 10)
    redis.set(api.keys.stat("failed"), 2)
    today = datetime.date(2024, 3, 2)
    redis.set(api.keys.daily_stat("processed", "2024-03-01"), 7)
    redis.set(api.keys.daily_stat("failed", "2024-03-02"), 1)
    stats = api.stats()
    assert stats == {"processed": 10, "failed": 2, "busy": 0, "enqueued": 1, "scheduled": 1,
                     "retries": 0, "dead": 0, "processes": 0}
    history = api.history(3, today=today)
    assert [(d.day, d.processed, d.failed) for d in history] == [
        ("2024-02-29", 0, 0), ("2024-03-01", 7, 0), ("2024-03-02", 0, 1)]


def test_redis_info(api):
    info = api.redis_info()
    assert info["version"].count(".") >= 1 and info["connected_clients"] >= 1


def test_namespace_prefixes_keys(redis):
    namespaced = Api(redis, Keys("ns"))
    redis.lpush("ns:queue:x", json.dumps({"jid": "1"}))
    redis.sadd("ns:queues", "x")
    assert namespaced.queue("x").size == 1 and Api(redis).queue("x").size == 0


@pytest.mark.parametrize("value, expected", [
    (1700000000.5, 1700000000.5), (1700000000500, 1700000000.5), (0, 0.0), (-5.0, -5.0),
    (float("nan"), None), (float("inf"), None), (float("-inf"), None), (1e300, None),
    (-1e300, None), (10 ** 400, None), ("1700000000", None), (True, None), (None, None),
    (99_999_999_999, 99_999_999_999.0), (-62135596800, -62135596800.0), (-62135596801, None)])
def test_seconds_gives_a_date_or_none(value, expected):
    assert forkq_api.seconds(value) == expected


@pytest.mark.parametrize("score", [12.5, -5.0, 1e-05, 1e16, float("inf"), float("-inf"), 0.0])
def test_a_key_names_its_entry_at_any_score(api, redis, score):
    redis.zadd(api.keys.retry, {failed_job("ab-cd/ef"): score, failed_job("other"): score})
    entry = next(e for e in api.retries.page() if e.jid == "ab-cd/ef")
    assert api.retries.get(entry.key).raw == entry.raw
    assert api.retries.get(f"{score!r}-missing") is None and api.retries.get("junk") is None


def test_a_long_or_missing_jid_is_named_by_its_digest():
    long_jid = Entry(failed_job("x" * 5000))
    assert long_jid.ident == long_jid.digest and long_jid.matches(long_jid.digest)
    assert Entry('{"class":"X"}').ident == Entry('{"class":"X"}').digest
    assert Entry(failed_job("abc")).ident == "abc"
    assert Entry("[" * 100_000).malformed, "nesting too deep to parse is malformed, not a crash"


def test_queue_find_by_ident_near_a_hint_or_anywhere(api, redis):
    for n in range(2500):
        redis.lpush(api.keys.queue("q"), json.dumps({"jid": f"{n:024}", "class": "X"}))
    redis.lpush(api.keys.queue("q"), "{broken")
    queue = api.queue("q")
    assert queue.find(f"{2499:024}", hint=1).jid == f"{2499:024}"
    assert queue.find(f"{0:024}", hint=0).jid == f"{0:024}", "found far from the hint"
    assert queue.find(Entry("{broken").digest).raw == "{broken"
    assert queue.find("missing", hint=10) is None


def test_read_only_api_does_not_prune_processes(redis):
    redis.sadd(Keys().processes, "gone:1:def")
    assert Api(redis, read_only=True).processes() == []
    assert redis.smembers(Keys().processes) == {"gone:1:def"}
    Api(redis).processes()
    assert redis.smembers(Keys().processes) == set()


def test_text_that_is_not_utf8_round_trips(redis_url, redis):
    raw = redis_py.Redis.from_url(redis_url)
    raw.sadd("queues", b"q\xff")
    raw.lpush(b"queue:q\xff", b'{"jid":"j1","args":["\xfe"]}')
    api = Api(redis_py.Redis.from_url(redis_url, decode_responses=True,
                                      encoding_errors="surrogateescape"))
    [queue] = api.all_queues()
    [job] = queue.jobs()
    assert queue.size == 1 and api.stats()["enqueued"] == 1
    assert queue.delete(queue.find("j1"))
    queue.clear()
    assert raw.smembers("queues") == set()


#: JSON nested far deeper than any record (and than Python's stack allows to decode)
DEEP = "[" * 5000 + "]" * 5000


def test_a_bad_heartbeat_is_listed_with_its_reason_and_reads_go_on(api, redis):
    good = "host:1:abc"
    redis.sadd(api.keys.processes, good, "deep:2:abc", "queue:x", "huge:3:abc")
    redis.hset(api.keys.process(good), mapping={"info": json.dumps({"hostname": "host"}),
                                                 "busy": 2, "concurrency": 5})
    redis.hset(api.keys.process("deep:2:abc"), mapping={"info": DEEP, "busy": 1})
    redis.lpush("queue:x", "{}")  # a producer's SADD processes queue:x: a list, not a hash
    redis.hset(api.keys.process("huge:3:abc"), mapping={"info": "[1]", "busy": "9" * 400,
                                                         "rss": "-1"})
    redis.hset(api.keys.work(good), mapping={"t1": DEEP, "t2": "[" * 900 + "]" * 900})
    redis.hset(api.keys.work("deep:2:abc"), "t1", "{}")

    found = {p.identity: p for p in api.processes()}
    assert found[good].problem is None and found[good].busy == 2
    assert found["deep:2:abc"].problem == "info nests JSON deeper than 32 levels"
    assert "its key is not a heartbeat hash (WRONGTYPE" in found["queue:x"].problem
    assert found["huge:3:abc"].problem == (
        "info is a JSON list, not an object; busy is out of a counter's range (" + "9" * 59
        + "…); rss is out of a counter's range (-1)")
    assert found["huge:3:abc"].busy == 0 and found["huge:3:abc"].rss_kb == 0
    assert redis.type("queue:x") == "list", "the producer's key is left alone"
    assert sorted(w.job.malformed for w in api.workers()) == [True, True]
    stats = api.stats()
    assert stats["busy"] == 3 and stats["processes"] == 4


def test_a_bad_periodic_state_is_reported_with_its_reason(api, redis):
    redis.hset(api.keys.periodic_state, mapping={
        "deep:last": DEEP, "deep:next": "1767225601", "odd:next": "soon",
        "ok:last": json.dumps({"tick": 1, "jid": "j"})})
    report = api.periodic()
    entries = {e["name"]: e for e in report["entries"]}
    assert entries["deep"]["last"] is None and entries["deep"]["next"] == 1767225601.0
    assert entries["deep"]["problem"] == "last nests JSON deeper than 32 levels"
    assert entries["odd"]["problem"] == "next is not a time ('soon')"
    assert entries["ok"] == {"name": "ok", "next": None, "last": {"tick": 1, "jid": "j"},
                             "problem": None}
    redis.delete(api.keys.periodic_state)
    redis.hset(api.keys.periodic_leader, "a", "b")
    redis.lpush(api.keys.periodic_state, "x")
    report = api.periodic()
    assert report["leader"] == {"identity": None, "master_pid": None}
    assert "the leader key is not a string" in report["problem"]
    assert "the state key is not a hash" in report["problem"]


def test_bad_metrics_counters_count_zero_and_are_named(api, redis):
    from forkq.api import jobmetrics
    from forkq.jobmetrics import histogram_window, minute_bucket, utc

    now = time.time()
    redis.hset(api.keys.job_metrics(minute_bucket(utc(now))),
               mapping={"A|p": "9" * 400, "A|ms": "9" * 400, "A|f": "x", "B|p": 3, "B|ms": 30})
    redis.lpush(api.keys.job_histogram("B", histogram_window(utc(now))), "not a bitfield")
    redis.lpush(api.keys.job_metrics(minute_bucket(utc(now - 60))), "a list")
    found = {m.name: m for m in jobmetrics.top_jobs(api.redis, api.keys, now)}
    assert found["A"].total_processed == 0 and found["A"].bad == 3
    assert found["A"].problem in ("A|f is not an integer ('x')",
                                  f"A|p is out of a counter's range ({'9' * 59}…)",
                                  f"A|ms is out of a counter's range ({'9' * 59}…)")
    assert found["A"].average_ms == 0 and found["A"].total_seconds == 0
    assert found["B"].total_processed == 3 and found["B"].problem is None
    one = jobmetrics.for_job(api.redis, api.keys, "B", now)
    assert one.total_processed == 3 and one.bad == 2
    assert one.problem.startswith("a minute's key holds another type (WRONGTYPE")


def test_keys_of_another_type_read_as_empty_with_the_reason(api, redis):
    redis.sadd(api.keys.queues, "hashed", "good")
    redis.hset(api.keys.queue("hashed"), "a", "b")
    redis.lpush(api.keys.queue("good"), failed_job("g1"))
    redis.lpush(api.keys.retry, "x")  # a producer's LPUSH retry x
    good, hashed = api.all_queues()
    assert (hashed.size, hashed.latency, hashed.jobs()) == (0, 0.0, [])
    assert hashed.problem.startswith("its key is not a list (WRONGTYPE")
    assert good.size == 1 and good.problem is None
    retries = api.retries
    assert (retries.size, retries.page(), list(retries.filter("x")), retries.retry_all()) == \
        (0, [], [], 0)
    assert retries.problem.startswith("its key is not a sorted set (WRONGTYPE")
    assert api.stats()["enqueued"] == 1 and api.stats()["retries"] == 0
    redis.delete(api.keys.queues, api.keys.processes)
    redis.set(api.keys.queues, "x")
    redis.set(api.keys.processes, "x")
    assert api.all_queues() == [] and api.processes() == []
    assert redis.type(api.keys.retry) == "list", "the producer's key is left alone"


def test_only_a_wrong_type_is_a_bad_record_other_error_replies_are_raised():
    from forkq.api.records import wrong_type

    assert wrong_type(redis_py.ResponseError("WRONGTYPE Operation against a key")) is True
    assert wrong_type({"a": "b"}) is False and wrong_type(None) is False
    for error in (redis_py.ResponseError("NOPERM this user has no permissions"),
                  redis_py.ConnectionError("gone")):
        with pytest.raises(type(error)):
            wrong_type(error)


def test_queue_summaries_read_what_each_queue_reads_in_one_round_trip(api, redis):
    redis.sadd(api.keys.queues, "hashed", *[f"q{index:03}" for index in range(300)])
    redis.hset(api.keys.queue("hashed"), "a", "b")
    redis.lpush(api.keys.queue("q007"), failed_job("old"), failed_job("new"))
    api.queue("q010").pause()
    reads = redis.info("stats")["total_reads_processed"]
    found = api.queue_summaries()
    assert redis.info("stats")["total_reads_processed"] - reads < 10, "not one per queue"
    assert [s.name for s in found] == [q.name for q in api.all_queues()]
    for summary, queue in zip(found, api.all_queues()):
        assert (summary.size, summary.latency, summary.paused) == \
            (queue.size, pytest.approx(queue.latency, abs=5), queue.paused), queue.name
        assert summary.problem == queue.problem
    assert found[0].problem.startswith("its key is not a list (WRONGTYPE")
    assert found[8].size == 2 and found[8].latency > 0 and found[11].paused
