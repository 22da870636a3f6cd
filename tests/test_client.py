"""Enqueueing against a real Redis: layout, options, bulk push, refusal of non-JSON args."""

import functools
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import warnings

import pytest
import redis as redis_py

import forkq
from forkq import client, config, connection, payload
from forkq.connection.source import Source
from forkq.keys import Keys
from jobs import Record, Shared, add
from masters import ROOT, TESTS


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


@pytest.mark.parametrize("batch_size", [0, -5, True, 2.5, "10", None])
def test_a_batch_size_that_is_not_a_count_of_jobs_is_refused(redis, batch_size):
    with pytest.raises(ValueError, match=rf"jobs.Record.perform_bulk: batch_size is "
                                         rf"{re.escape(repr(batch_size))}; give a whole number"):
        Record.perform_bulk([[1], [2]], batch_size=batch_size)
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
    assert text == payload.dumps(expected)


# --- the producer's settings come from the workers' file and environment


def producer_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "FORKQ_"))}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, TESTS])
    return {**env, **extra}


def test_a_producer_script_uses_the_workers_namespace_and_embedded_redis(tmp_path, redis,
                                                                         redis_server):
    path = tmp_path / "forkq.yml"
    path.write_text(f"namespace: app2\ndata_dir: {redis_server.data_dir}\nrequire: [jobs]\n")
    script = "import jobs; print(jobs.Record.perform_async(1))"
    result = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=producer_env(),
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    worker_keys = Keys(config.load(str(path), environ={}).namespace)
    (job,) = [json.loads(t) for t in redis.lrange(worker_keys.queue("default"), 0, -1)]
    assert job["jid"] == result.stdout.strip() and redis.llen("queue:default") == 0


def test_configure_then_environment_then_file_then_defaults(tmp_path, redis, redis_url,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REDIS_URL", raising=False)
    (tmp_path / "forkq.yml").write_text(f"namespace: filens\nredis_url: {redis_url}\n")
    (tmp_path / "other.yml").write_text(f"namespace: otherns\nredis_url: {redis_url}\n")
    source = Source()
    producer = client.Client(source=source)
    assert source.settings.namespace == "filens" and source.settings.data_dir == ".forkq"
    monkeypatch.setenv("FORKQ_CONFIG", str(tmp_path / "other.yml"))
    source.configure(data_dir="d")
    assert (source.settings.namespace, source.settings.data_dir) == ("otherns", "d")
    monkeypatch.setenv("FORKQ_NAMESPACE", "envns")
    source.configure()
    producer.push(Record, [1], {})
    source.configure(namespace="callns")
    producer.push(Record, [2], {})
    source.close()
    assert redis.llen("envns:queue:default") == 1 and redis.llen("callns:queue:default") == 1


def test_configure_reads_nothing_and_a_bad_file_fails_the_push_naming_it(tmp_path, redis,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "forkq.yml").write_text("poll_interval: .nan\n")
    source = Source()
    source.configure(namespace="x")
    producer = client.Client(source=source)
    with pytest.raises(forkq.ConfigError, match="forkq.yml: key 'poll_interval' has invalid "
                                                "value nan"):
        producer.push(Record, [1], {})


@pytest.mark.parametrize("settings, fragment", [
    ({"redis_url": "ftp://example.com"}, "key 'redis_url' has invalid value 'ftp://example.com'"),
    ({"namespace": "a b"}, "key 'namespace' has invalid value 'a b'"),
])
def test_configure_refuses_a_bad_value_at_the_call(settings, fragment):
    with pytest.raises(forkq.ConfigError, match=re.escape(f"forkq.configure(): {fragment}")):
        Source().configure(**settings)


def test_a_job_class_from_main_warns_once_per_class_at_enqueue(redis):
    perform = lambda self, value: None  # noqa: E731
    first = type("MainJob", (forkq.Job,), {"__module__": "__main__", "perform": perform})
    second = type("OtherMainJob", (forkq.Job,), {"__module__": "__main__", "perform": perform})
    shared = type("SharedMainJob", (forkq.Job,), {"__module__": "__main__", "perform": perform,
                                                 "name": "SharedMainJob"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first.perform_async(1)
        first.perform_bulk([[2], [3]])
        second.perform_in(10, 4)
        shared.perform_async(5)
    messages = [str(w.message) for w in caught if w.category is client.MainModuleJobWarning]
    assert len(messages) == 2
    assert "job class __main__.MainJob is defined in the script being run" in messages[0]
    assert "__main__.OtherMainJob" in messages[1] and "no worker can resolve it" in messages[1]
    assert redis.llen("queue:default") == 4


# --- client validation


@pytest.mark.parametrize("method, value, error, fragment", [
    ("perform_in", math.nan, ValueError, "perform_in: seconds is nan; pass a finite number"),
    ("perform_in", math.inf, ValueError, "perform_in: seconds is inf"),
    ("perform_at", -math.inf, ValueError, "perform_at: timestamp is -inf"),
    ("perform_in", 1e300, ValueError, "perform_in: seconds 1e+300 is more than the longest "
                                      "delay, 3153600000 (100 years)"),
    ("perform_in", 10 ** 400, ValueError, "perform_in: seconds is an int of 1329 bits; pass a "
                                          "finite number of seconds, at most 3153600000"),
    ("perform_at", 1.8e12, ValueError, "perform_at: 1800000000000.0 is more than 100 years from "
                                       "now (a timestamp in milliseconds? pass epoch seconds)"),
    ("perform_in", "60", TypeError, "perform_in: seconds must be a number, not '60' (str)"),
    ("perform_in", True, TypeError, "perform_in: seconds must be a number, not True"),
    ("perform_at", None, TypeError, "perform_at: timestamp must be a number, not None"),
])
def test_times_that_are_not_finite_or_absurd_are_refused(redis, method, value, error, fragment):
    with pytest.raises(error, match=re.escape(f"jobs.Record.{fragment}")):
        getattr(Record, method)(value, "x")
    with pytest.raises(error, match=re.escape(fragment)):
        getattr(Record.set(queue="low"), method)(value, "x")
    assert redis.dbsize() == 0


def test_bad_options_are_refused_at_enqueue_before_anything_is_pushed(redis):
    with pytest.raises(TypeError, match="option 'retry_queue' must be a queue name"):
        Record.set(retry_queue=5).perform_async(1)
    with pytest.raises(TypeError, match="option 'dead' must be true or false, not 'no'"):
        Record.set(dead="no").perform_bulk([[1]])
    assert redis.dbsize() == 0


@pytest.mark.parametrize("option, value, problem", [
    ("retry_queue", "slow\nq", "a usable queue name (whitespace and control characters are not "
                               "allowed)"),
    ("retry_queue", "slow,2", "a usable queue name (a comma is not allowed"),
    # beyond what Redis' EX/PX accept: once pushed, the worker's write would be refused
    ("result_ttl", 1e300, "a positive number of seconds up to 3153600000 (100 years)"),
    ("unique_for", 1e300, "a positive number of seconds up to 3153600000 (100 years)"),
    ("expires_in", 10 ** 400, "a positive number of seconds up to 3153600000 (100 years)"),
])
def test_values_no_worker_or_redis_could_use_are_refused_before_the_push(
        redis, option, value, problem):
    with pytest.raises(TypeError, match=re.escape(f"option {option!r} must be {problem}")):
        Record.set(**{option: value}).perform_async(1)
    assert redis.dbsize() == 0


@pytest.mark.parametrize("call, fragment", [
    (lambda: Record.perform_async(), "jobs.Record.perform_async: perform(value) takes 1 "
                                     "argument, but 0 were given"),
    (lambda: Shared.perform_async(1, 2, 3), "HardJob.perform_async: perform(a, b) takes 2 "
                                            "arguments, but 3 were given"),
    (lambda: add.perform_in(5, 1), "jobs.add.perform_at: perform(a, b) takes 2 arguments, "
                                   "but 1 were given"),
    (lambda: Record.perform_bulk([[1], [2, 3]]), "jobs.Record.perform_bulk: item 1: "
                                                 "perform(value) takes 1 argument, but 2 were"),
])
def test_argument_count_is_checked_against_perform_at_enqueue(redis, call, fragment):
    with pytest.raises(TypeError, match=re.escape(fragment)):
        call()
    assert redis.dbsize() == 0


def test_signatures_with_defaults_star_args_and_keyword_only(redis):
    flexible = type("Flexible", (forkq.Job,), {
        "perform": lambda self, a, b=2, *rest: None})
    flexible.perform_bulk([[1], [1, 2], [1, 2, 3, 4]])
    with pytest.raises(TypeError, match=r"perform\(a, b=2, \*rest\) takes at least 1 argument"):
        flexible.perform_async()
    keyword = type("Keyword", (forkq.Job,), {"perform": lambda self, a, *, when: None})
    with pytest.raises(TypeError, match="requires the keyword-only argument 'when', which a "
                                        "job cannot receive"):
        keyword.perform_async(1)
    assert redis.llen("queue:default") == 3


def test_a_decorator_that_injects_an_argument_is_trusted(redis):
    def with_connection(perform):
        @functools.wraps(perform)
        def wrapper(self, *args):
            return perform(self, "connection", *args)
        return wrapper

    injected = type("Injected", (forkq.Job,), {
        "perform": with_connection(lambda self, connection, user_id: None)})
    injected.perform_async(7)
    assert redis.llen("queue:default") == 1


def test_two_hundred_threads_enqueue_at_once_without_failing(redis):
    threads, barrier, failures = 200, threading.Barrier(200), []

    def enqueue(index):
        barrier.wait()
        for round_ in range(5):
            try:
                Record.perform_async(index * 10 + round_)
            except Exception as exc:  # counted and shown below
                failures.append(repr(exc))

    workers = [threading.Thread(target=enqueue, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    assert failures == [] and redis.llen("queue:default") == threads * 5


def test_a_wait_for_a_free_connection_that_runs_out_says_so(redis_url, monkeypatch):
    monkeypatch.setattr(connection, "POOL_SIZE", 1)
    monkeypatch.setattr(connection, "POOL_WAIT", 0.2)
    shared = connection.make_shared_client(redis_url)
    held = shared.connection_pool.get_connection()
    try:
        with pytest.raises(connection.PoolTimeoutError, match="all 1 Redis connections of this "
                                                              "process stayed busy for 0.2 s"):
            connection.send_commands(shared, [("PING",)])
    finally:
        shared.connection_pool.release(held)
    assert connection.send_commands(shared, [("PING",)]) == ["PONG"]
    shared.close()


# --- unique jobs ---------------------------------------------------------------------------

class Report(forkq.Job):
    options = {"unique_for": 60}

    def perform(self, day):
        pass


def unique_locks(redis) -> dict[str, str]:
    return {key: redis.get(key) for key in redis.keys("forkq:unique:*")}


def test_two_hundred_threads_enqueue_one_unique_job_once(redis):
    threads, barrier, jids = 200, threading.Barrier(200), []

    def enqueue():
        barrier.wait()
        jids.append(Report.perform_async("2026-11-29"))

    workers = [threading.Thread(target=enqueue) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    pushed = [jid for jid in jids if jid is not None]
    assert len(jids) == threads and len(pushed) == 1
    assert redis.llen("queue:default") == 1
    (job,) = queued(redis)
    assert job["jid"] == pushed[0] and job["unique_until"] == "success"
    assert unique_locks(redis) == {f"forkq:unique:{job['unique_digest']}": job["jid"]}
    assert 30 < redis.pttl(f"forkq:unique:{job['unique_digest']}") / 1000 <= 60


def test_a_duplicate_returns_none_and_is_logged_at_debug(redis, caplog):
    import logging

    first = Report.perform_async("a")
    with caplog.at_level(logging.DEBUG, logger="forkq"):
        assert Report.perform_async("a") is None
    assert Report.perform_async("b") is not None, "other args: another lock"
    assert Report.set(queue="other").perform_async("a") is not None, "another queue"
    assert [j["jid"] for j in queued(redis)][-1] == first
    assert "already queued, scheduled or running; not enqueued" in caplog.text


def test_a_scheduled_unique_job_holds_its_lock_until_its_run_time_plus_unique_for(redis):
    jid = Report.set(unique_until="start").perform_in(100, "later")
    (member,) = redis.zrange("schedule", 0, -1)
    job = json.loads(member)
    assert (job["jid"], job["unique_until"]) == (jid, "start")
    ttl = redis.pttl(f"forkq:unique:{job['unique_digest']}") / 1000
    assert 159 < ttl <= 160
    assert Report.perform_async("later") is None


def test_a_failed_push_releases_the_lock(redis):
    queue_key = client.default().keys.queue(Report.options.get("queue", "default"))
    redis.set(queue_key, "not a list")  # the real LPUSH fails: WRONGTYPE
    with pytest.raises(redis_py.ResponseError):
        Report.perform_async("x")
    assert unique_locks(redis) == {}
    redis.delete(queue_key)
    assert Report.perform_async("x") is not None


def test_bulk_pushes_each_unique_job_once(redis):
    Report.perform_async(1)
    jids = Report.perform_bulk([[1], [2], [2], [3]])
    assert len(jids) == 2 and all(jids)
    assert sorted(j["args"][0] for j in queued(redis)) == [1, 2, 3]
    assert len(unique_locks(redis)) == 3


def test_a_job_that_is_not_unique_takes_no_lock(redis):
    Record.perform_async(1)
    Record.perform_async(1)
    assert redis.llen("queue:default") == 2 and unique_locks(redis) == {}
    assert "unique_digest" not in queued(redis)[0]


def test_middleware_sees_the_lock_fields_and_a_stopped_push_takes_no_lock(redis):
    chain = client.default().middleware
    seen = []

    def stop_odd(job_class, payload, queue, call_next):
        seen.append(payload.get("unique_digest"))
        return None if payload["args"][0] % 2 else call_next()

    chain.add_client(stop_odd)
    try:
        assert Report.perform_async(1) is None
        assert Report.perform_bulk([[2], [3], [4]]) and len(queued(redis)) == 2
    finally:
        chain.client.remove(stop_odd)
    assert len(seen) == 4 and all(len(digest) == 64 for digest in seen)
    assert len(unique_locks(redis)) == 2, "only the pushed jobs hold a lock"


@pytest.mark.parametrize("with_client_middleware", [False, True],
                         ids=["bulk template", "payload by payload"])
def test_bulk_middleware_wraps_the_push_once_and_its_fields_reach_every_job(
        redis, with_client_middleware):
    chain = forkq.hooks.registry.middleware
    calls, seen = [], []

    def note(job_class, fields, queue, call_next):
        fields["note"] = "from the bulk middleware"
        jids = call_next()
        calls.append((job_class, queue, len(jids)))
        return jids

    def look(job_class, payload, queue, call_next):
        seen.append(payload.get("note"))
        return call_next()

    chain.add_bulk(note)
    if with_client_middleware:
        chain.add_client(look)
    try:
        jids = Record.set(queue="bulk").perform_bulk([[1], [2], [3]], batch_size=2)
    finally:
        chain.bulk.remove(note)
        if with_client_middleware:
            chain.client.remove(look)
    assert calls == [(Record, "bulk", 3)]
    assert sorted(job["jid"] for job in queued(redis, "bulk")) == sorted(jids)
    assert {job["note"] for job in queued(redis, "bulk")} == {"from the bulk middleware"}
    assert seen == (["from the bulk middleware"] * 3 if with_client_middleware else [])


def run_python(script: str) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter (nothing imported yet), with the repository on the path."""
    return subprocess.run([sys.executable, "-c", script], env=producer_env(), capture_output=True,
                          text=True, timeout=60)


LOADED = "import sys; print(' '.join(sorted(m for m in sys.modules if m.startswith({!r}))))"


def test_import_forkq_loads_the_client_half_only():
    result = run_python("import forkq\n" + LOADED.format(""))
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    server = [name for name in loaded if name.startswith(("forkq.worker", "forkq.supervisor",
                                                          "forkq.periodic", "forkq.api",
                                                          "forkq.web", "forkq.metrics"))]
    # redis-py itself imports the OpenTelemetry SDK where it is installed, and the SDK psutil:
    # only what forkq adds to ``import redis`` counts
    by_redis = set(run_python("import redis\n" + LOADED.format("")).stdout.split())
    heavy = [name for name in loaded if name.split(".")[0] in ("psutil", "prometheus_client",
                                                               "cronsim")
             and name not in by_redis]
    assert server == [] and heavy == []
    assert not {"forkq.aio", "forkq.connection.aio", "forkq.limiter"} & set(loaded)


def test_limiter_and_aio_work_after_a_plain_import_forkq():
    result = run_python("import forkq, sys\n"
                        "print(forkq.limiter.concurrent('api', 2).limit, 'forkq.limiter' in "
                        "sys.modules)\n"
                        "print(callable(forkq.aio.perform_async), 'forkq.aio' in sys.modules)\n"
                        "forkq.nothing_here")
    assert result.stdout.split() == ["2", "True", "True", "True"]
    assert "AttributeError: module 'forkq' has no attribute 'nothing_here'" in result.stderr


def test_every_public_path_still_imports():
    result = run_python(
        "import forkq, forkq.results, forkq.testing, forkq.hooks, forkq.connection, forkq.api\n"
        "import forkq.web, forkq.contrib.django\n"
        "assert forkq.job and forkq.Job and forkq.configure and forkq.result and forkq.aresult\n"
        "assert forkq.results.Result and forkq.limiter.window and forkq.aio.perform_bulk\n"
        "assert forkq.testing.inline and forkq.hooks.registry.middleware\n"
        "assert issubclass(forkq.connection.PoolTimeoutError, Exception)\n"
        "assert forkq.api.Api and forkq.api.Queue and forkq.api.DeadSet and forkq.api.default\n"
        "assert callable(forkq.web.app)\n"
        "assert '__getattr__' in vars(forkq.contrib.django)\n"
        "from forkq.cli import main; from forkq.ctl import main as ctl_main")
    assert result.returncode == 0, result.stderr
    for module in ("forkq.worker", "forkq.cli", "forkq.ctl"):
        shown = subprocess.run([sys.executable, "-m", module, "--help"], env=producer_env(),
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and "usage:" in shown.stdout, (module, shown.stderr)
