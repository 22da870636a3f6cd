"""Job results on a real Redis: the record's life from enqueue to finish, TTL, bad values."""

import asyncio
import json
import math
import threading
import time

import pytest

import forkq

from forkq import client, connection, options, push, results
from forkq.keys import Keys
from helpers import wait_for


def payload(**extra):
    base = {"class": "jobs.Record", "args": [], "queue": "default", "jid": "a" * 24,
            "result_ttl": 60}
    return {**base, **extra}


@pytest.fixture
def recorder(redis):
    return results.ResultRecorder(Keys())


def test_a_result_goes_from_queued_to_running_to_succeeded(redis, recorder):
    job = payload()
    connection.send_commands(client.default().redis, push.commands(Keys(), [job], None, 100.0))
    queued = results.get(job["jid"])
    assert queued.status == "queued" and queued.enqueued_at == 100.0 and queued.attempts == 0
    assert queued.class_name == "jobs.Record" and queued.args == []
    recorder.started(redis, job, "host:1:ab")
    running = results.get(job["jid"])
    assert running.status == "running" and running.attempts == 1
    assert running.worker_id == "host:1:ab" and running.started_at >= 100.0
    recorder.succeeded(redis, job, {"total": [1, 2]})
    done = results.get(job["jid"])
    assert done.status == "succeeded" and done.value == {"total": [1, 2]} and done.finished
    assert done.error is None and done.finished_at >= done.started_at
    assert 0 < redis.ttl(f"forkq:result:{job['jid']}") <= 60


def push_recorded(job, now=100.0):
    connection.send_commands(client.default().redis, push.commands(Keys(), [job], None, now))


def test_a_first_start_over_the_pushed_record_is_one_set_and_no_get(redis, recorder):
    job = payload(created_at=100.0)
    push_recorded(job)
    redis.config_resetstat()
    written = recorder.started(redis, job, "w1")
    calls = {k: v["calls"] for k, v in redis.info("commandstats").items()}
    assert calls.get("cmdstat_set") == 1 and "cmdstat_get" not in calls, calls
    running = results.get(job["jid"])
    assert running.status == "running" and running.enqueued_at == 100.0
    assert running.worker_ids == ["w1"] and running.first_started_at == running.started_at
    assert written == json.loads(redis.get(f"forkq:result:{job['jid']}"))


def test_a_first_start_after_a_lost_run_keeps_its_history(redis, recorder):
    """A run recovered after its worker died has no retry_count: the record it finds is not
    the pushed one, so the record built on what was there is written."""
    job = payload(created_at=100.0)
    push_recorded(job)
    lost = recorder.started(redis, job, "w0")
    recorder.started(redis, job, "w1")
    found = results.get(job["jid"])
    assert found.worker_ids == ["w0", "w1"] and found.worker_id == "w1"
    assert found.first_started_at == lost["started_at"] and found.enqueued_at == 100.0


def test_a_first_start_over_an_expired_or_foreign_record_writes_it_anew(redis, recorder):
    job = payload(created_at=100.0, enqueued_at=101.0)
    recorder.started(redis, job, "w1")  # nothing stored: as _update, enqueued_at from the payload
    assert results.get(job["jid"]).enqueued_at == 101.0
    other = payload(jid="b" * 24, created_at=100.0)
    redis.rpush(f"forkq:result:{other['jid']}", "not a record")
    recorder.started(redis, other, "w1")
    assert results.get(other["jid"]).status == "running"


def test_a_retried_failure_keeps_every_error_and_counts_attempts(redis, recorder):
    job = payload(result_ttl=30.5)
    recorder.started(redis, job, "w1")
    recorder.failed(redis, job, ValueError("first"), will_retry=True)
    between = results.get(job["jid"])
    assert between.status == "queued" and between.error["class"] == "ValueError"
    retried = {**job, "retry_count": 0}
    recorder.started(redis, retried, "w2")
    recorder.failed(redis, retried, KeyError("second"), will_retry=False)
    final = results.get(job["jid"])
    assert final.status == "failed" and final.attempts == 2 and final.worker_ids == ["w1", "w2"]
    assert [e["message"] for e in final.errors] == ["first", "'second'"]
    assert "KeyError: 'second'" in final.error["traceback"]
    assert redis.ttl(f"forkq:result:{job['jid']}") == 31


def test_a_value_json_cannot_store_is_an_error_on_the_result(redis, recorder):
    job = payload()
    recorder.started(redis, job, "w1")
    recorder.succeeded(redis, job, {1, 2})
    result = results.get(job["jid"])
    assert result.status == "failed" and result.value is None
    assert result.error["class"] == "TypeError"
    assert "jobs.Record returned a builtins.set" in result.error["message"]


@pytest.mark.parametrize("value", [7, "text", 2.5, None, True, (1, {2: "x"}), {1, 2}, float("nan")])
def test_the_record_a_write_returns_is_the_one_a_reader_reads(redis, recorder, value):
    """What ``succeeded`` returns to the worker (the Django backend builds ``task_finished``'s
    result from it) is what a reader decodes, whatever the value became in JSON."""
    job = payload(created_at=100.0)
    push_recorded(job)
    written = recorder.succeeded(redis, job, value, recorder.started(redis, job, "w1"))
    assert written == json.loads(redis.get(f"forkq:result:{job['jid']}"))


@pytest.mark.parametrize("args, worker, value", [
    ([], "host:1:ab", None),
    (["é \u2028\n\"", {"finished_at": None, "status": "queued"}], 'hôst:"2":ab', "ü"),
    ([1e300, 10**30, [2.5, None]], "host:3:ab", (1, {"k": 2.5})),
])
def test_a_first_runs_records_are_the_encoders_text(redis, recorder, args, worker, value):
    """A first run's records are written around the push's text, not encoded again: what is
    stored is, byte for byte, what the encoder writes of the record read back."""
    job = payload(args=args, created_at=100.0)
    push_recorded(job)
    key = f"forkq:result:{job['jid']}"
    written = recorder.started(redis, job, worker)
    assert redis.get(key) == forkq.payload.dumps(written)
    written = recorder.succeeded(redis, job, value, written)
    assert redis.get(key) == forkq.payload.dumps(written)
    assert written["args"] == args and written["worker_ids"] == [worker]


@pytest.mark.parametrize("value", [float("nan"), [1.0, float("inf")], {"x": (float("-inf"),)}])
def test_a_value_holding_nan_or_infinity_is_an_error_on_the_result(redis, recorder, value):
    job = payload()
    recorder.started(redis, job, "w1")
    recorder.succeeded(redis, job, value)
    result = results.get(job["jid"])
    assert result.status == "failed" and result.value is None
    assert "which JSON cannot store as its result" in result.error["message"]


def test_payloads_without_result_ttl_keep_nothing(redis, recorder):
    job = payload(result_ttl=None)
    assert push.commands(Keys(), [job], None, 1.0)[0][0] == "SADD"
    recorder.started(redis, job, "w1")
    recorder.succeeded(redis, job, 1)
    assert results.get(job["jid"]) is None and redis.keys("forkq:result:*") == []


def test_an_unknown_jid_reads_none_sync_and_async(redis, recorder):
    recorder.started(redis, payload(), "w1")
    assert results.get("b" * 24) is None

    async def read():
        from forkq import aio
        try:
            return await results.aget("b" * 24), await results.aget("a" * 24)
        finally:
            await aio.aclose()

    missing, found = asyncio.run(read())
    assert missing is None and found.status == "running"


def test_the_namespace_prefixes_the_result_key(redis):
    recorder = results.ResultRecorder(Keys("app"))
    recorder.started(redis, payload(), "w1")
    assert redis.exists("app:forkq:result:" + "a" * 24)


@pytest.mark.parametrize("value", [0, -1, True, "60", float("inf"), float("nan")])
def test_check_ttl_refuses_what_is_not_a_positive_number(value):
    with pytest.raises(TypeError, match="'result_ttl' must be a positive number"):
        options.check_ttl(value, "Job.set()")
    assert results.ttl_of(payload(result_ttl=value)) is None


# --- results written by a real worker, read through forkq.result / forkq.aresult

def wait_finished(jid):
    from helpers import wait_for

    return wait_for(lambda: (r := forkq.result(jid)) and r.finished and r, 10,
                    message=f"the result of {jid}")


def test_a_worker_records_a_threaded_jobs_value_and_error(redis, start_worker):
    from async_jobs import Square

    good, bad = Square.perform_async(7), Square.perform_async(-1)
    assert forkq.result(good).status == "queued"
    plain = Square.set(result_ttl=None).perform_async(2)
    assert forkq.result(plain) is None
    worker = start_worker(concurrency=2)
    done, failed = wait_finished(good), wait_finished(bad)
    assert done.status == "succeeded" and done.value == 49 and done.attempts == 1
    assert done.worker_id == worker.services.identity and done.started_at <= done.finished_at
    assert failed.status == "failed" and failed.error["class"] == "ValueError"
    assert "-1 has no square here" in failed.error["traceback"]
    assert asyncio.run(_aresult(good)).value == 49


async def _aresult(jid):
    from forkq import aio

    try:
        return await forkq.aresult(jid)
    finally:
        await aio.aclose()


@pytest.mark.parametrize("name", ["Flaky", "FlakyThreaded"])
def test_a_retried_failure_shows_queued_with_its_error(redis, start_worker, name):
    import async_jobs
    from helpers import wait_for

    jid = getattr(async_jobs, name).set(result_ttl=60).perform_async(3)
    start_worker(concurrency=1, poll_interval=60)  # the retry waits in the retry set
    between = wait_for(lambda: (r := forkq.result(jid)) and r.errors and r, 10)
    assert between.status == "queued" and between.error["message"] == "first run of 3"
    # The record is written before the retry is scheduled (``OutcomeWriter.failed``).
    assert wait_for(lambda: redis.zcard("retry") == 1)


def test_a_retry_that_runs_at_once_finds_its_failure_in_the_record(redis, start_worker):
    """The failing thread is held at its failure's log line (after the retry is scheduled)
    until the retry has started in another thread: the record must already hold the failure,
    so that the retry's start keeps it. Before, the failure was recorded after the log line,
    over the retry's running record, and the retry's success then wrote its own record,
    without the error. (A coroutine job's failure is written by the same ``outcome.failed``;
    its retry's start reads the record again, so holding its finisher thread shows nothing.)"""
    import logging

    import async_jobs

    jid = async_jobs.FlakyThreaded.set(result_ttl=60).perform_async(3)

    class HoldTheFailure(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("fail:"):
                wait_for(lambda: redis.hget("async:started", jid) == "2", 15,
                         message="the retry's start, in another thread")

    hold = HoldTheFailure()
    logging.getLogger("forkq").addHandler(hold)
    try:
        start_worker(concurrency=2)
        done = wait_finished(jid)
    finally:
        logging.getLogger("forkq").removeHandler(hold)
    assert (done.status, done.value, done.attempts) == ("succeeded", 3, 2)
    assert [error["message"] for error in done.errors] == ["first run of 3"]


def test_a_retry_redis_refuses_leaves_the_record_failed_with_its_one_error(redis,
                                                                          start_worker):
    """The record is written as a retry first; when Redis refuses the retry (``retry`` is a
    list here) the job is dead, and the record says so, its error not counted twice."""
    import async_jobs

    redis.lpush("retry", "not a sorted set")
    jid = async_jobs.FlakyThreaded.set(result_ttl=60).perform_async(3)
    start_worker(concurrency=1)
    failed = wait_finished(jid)
    assert failed.status == "failed" and failed.attempts == 1
    assert [error["message"] for error in failed.errors] == ["first run of 3"]
    # the record is final before the burial (a batch's callbacks must find it so)
    (buried,) = wait_for(lambda: redis.zrange("dead", 0, -1), 5, message="the burial")
    assert "[not retried: Redis refused its retry" in buried


def test_bulk_pushes_record_every_job_and_own_results_are_left_alone(redis, start_worker):
    from async_jobs import OwnResult, Square
    from forkq import api
    from helpers import wait_for

    jids = Square.perform_bulk([[1], [2], [3]])
    assert [forkq.result(jid).status for jid in jids] == ["queued"] * 3
    own = OwnResult.set(result_ttl=60).perform_async()
    start_worker(concurrency=1)
    assert [wait_finished(jid).value for jid in jids] == [1, 4, 9]
    wait_for(lambda: api.default().stats()["processed"] == 4, 10)
    assert forkq.result(own).status == "queued"


#: (record text, words of the reason): records anyone with write access to Redis can leave
BAD_RECORDS = [
    ("{not json", "is not JSON"),
    ("[" * 5000 + "]" * 5000, "nests JSON deeper than the JSON reader allows"),
    ('{"status":"succeeded","value":' + "7" * 5000 + "}", "is not JSON"),
    ("[1]", "a JSON list, not an object"),
    ('{"value": 1}', "status None is none of queued, running, succeeded, failed"),
    ('{"status":"done"}', "status 'done' is none of"),
    ('{"status":"failed","errors":[{"class":"ValueError"}]}', "errors[0] is not an object"),
    ('{"status":"failed","errors":{"class":"x"}}', "'errors' is a dict"),
    ('{"status":"running","worker_ids":[1]}', "'worker_ids' holds something other"),
    ('{"status":"running","attempts":"2"}', "'attempts' is a str"),
    ('{"status":"running","started_at":true}', "'started_at' is a bool"),
]


@pytest.mark.parametrize("text, reason", BAD_RECORDS)
def test_a_bad_record_is_an_error_naming_the_jid_sync_and_async(redis, text, reason):
    jid = "c" * 24
    redis.set(Keys().result(jid), text)
    with pytest.raises(forkq.errors.ResultRecordError) as raised:
        forkq.result(jid)
    assert str(raised.value).startswith(f"result record of job {jid} ")
    assert reason in str(raised.value)

    async def read():
        from forkq import aio
        try:
            return await forkq.aresult(jid)
        finally:
            await aio.aclose()

    with pytest.raises(forkq.errors.ResultRecordError, match=jid):
        asyncio.run(read())


def test_an_error_class_is_found_only_among_imported_modules():
    import subprocess
    import sys

    assert results.exception_class("ValueError") is ValueError
    assert results.exception_class("builtins.KeyError") is KeyError
    assert results.exception_class("forkq.SoftTimeLimitExceeded") is forkq.SoftTimeLimitExceeded
    assert results.exception_class("json.decoder.JSONDecodeError").__name__ == "JSONDecodeError"
    # what Django's TaskError.exception_class raises: ValueError for a path that names
    # something else, ImportError for one that names nothing (here, nothing already imported)
    for path in ("os.system", "forkq.Job"):
        with pytest.raises(ValueError, match="does not reference a valid exception"):
            results.exception_class(path)
    for path in ("no_such_module.Error", "os.path.nothing"):
        with pytest.raises(ImportError, match="forkq never imports a module"):
            results.exception_class(path)
    # In a fresh process: naming a module that is not loaded must not load it.
    code = ("import sys; from forkq import results\n"
            "try: results.exception_class('antigravity.Error')\n"
            "except ImportError: pass\n"
            "print('antigravity' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_a_django_task_error_never_imports_the_module_its_record_names():
    """Django's own ``TaskError.exception_class`` imports the path; the backend's does not.
    Run in a fresh process: Django's settings are configured once per process."""
    import subprocess
    import sys

    code = """if True:
        import sys
        import django
        from django.conf import settings
        settings.configure(INSTALLED_APPS=[] if django.VERSION >= (6,) else ["django_tasks"])
        django.setup()
        from forkq.contrib.django.taskresults import task_error
        error = task_error({"class": "antigravity.Error", "message": "m", "traceback": "t"})
        try:
            error.exception_class
        except ImportError as exc:
            print(exc)
        print("antigravity" in sys.modules)
        print(task_error({"class": "KeyError", "message": "", "traceback": ""}).exception_class)
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "'antigravity.Error' names nothing in a module this process has imported (forkq never "
        "imports a module a result record names)", "False", "<class 'KeyError'>"]


def _deep(levels):
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("spoil", [
    lambda redis, key: redis.set(key, "not json{"),
    lambda redis, key: redis.set(key, "[1, 2]"),
    lambda redis, key: redis.set(key, _deep(5000)),
    lambda redis, key: redis.set(key, '{"status": "queued", "errors": "x", "worker_ids": 5}'),
    lambda redis, key: redis.hset(key, "status", "queued"),
    lambda redis, key: redis.lpush(key, "x"),
], ids=["garbage", "list", "deep", "bad-fields", "hash", "redis-list"])
def test_a_bad_record_is_written_anew_and_the_job_runs(redis, start_worker, spoil):
    """A record that is not one (a producer's, or garbage) once sent the job to the dead set
    without running it."""
    import async_jobs  # noqa: F401  (registers async_jobs.Square with the in-process worker)
    from helpers import wait_for

    jid = client.new_jid()
    redis.lpush("queue:default", client.dumps({"class": "async_jobs.Square", "args": [6],
                                               "jid": jid, "queue": "default",
                                               "result_ttl": 60, "retry": True}))
    spoil(redis, f"forkq:result:{jid}")
    start_worker(concurrency=1)
    done = wait_for(lambda: _readable_result(jid), 10, message=f"the result of {jid}")
    assert done.status == "succeeded" and done.value == 36 and done.attempts == 1
    assert redis.zcard("dead") == 0


def _readable_result(jid):
    """The finished result, once the worker has written over the bad record (reading the bad
    one is the reader's business, not this test's)."""
    try:
        result = forkq.result(jid)
    except Exception:
        return None
    return result if result and result.finished else None


def test_a_retried_job_with_a_bad_retry_count_still_records(redis, recorder):
    job = payload(retry_count="x")
    assert recorder.started(redis, job, "w1")["attempts"] == 1
    redis.set(f"forkq:result:{job['jid']}", "garbage")
    assert recorder.failed(redis, job, ValueError("no"), will_retry=False)["status"] == "failed"
# --- waiting on a result (``wait=``)

def queued_job(redis, **extra):
    job = payload(**extra)
    connection.send_commands(client.default().redis, push.commands(Keys(), [job], None, 100.0))
    return job


def blocked_clients(redis) -> int:
    return redis.info("clients")["blocked_clients"]


def test_wait_returns_as_soon_as_the_result_is_final(redis, recorder):
    job = queued_job(redis)
    got = []
    waiter = threading.Thread(target=lambda: got.append(forkq.result(job["jid"], wait=20)))
    waiter.start()
    wait_for(lambda: blocked_clients(redis) == 1, message="the waiter blocked in Redis")
    recorder.succeeded(redis, job, {"rows": 3})
    waiter.join(5)
    assert not waiter.is_alive()
    assert got[0].status == "succeeded" and got[0].value == {"rows": 3}


def test_wait_gives_up_after_its_time_with_the_record_as_it_is(redis):
    job = queued_job(redis)
    started = time.monotonic()
    found = forkq.result(job["jid"], wait=0.3)
    assert found.status == "queued" and time.monotonic() - started >= 0.3


def test_wait_returns_at_once_for_a_final_result_or_a_job_without_one(redis, recorder):
    job = queued_job(redis)
    recorder.failed(redis, job, ValueError("bad row"), will_retry=False)
    started = time.monotonic()
    assert forkq.result(job["jid"], wait=30).status == "failed"
    assert forkq.result("f" * 24, wait=30) is None  # no record: nothing would announce its end
    assert time.monotonic() - started < 1.0


def test_a_retry_is_not_final_and_a_bad_wait_is_refused(redis, recorder):
    job = queued_job(redis)
    recorder.failed(redis, job, ValueError("once"), will_retry=True)
    assert not redis.exists(Keys().done(job["jid"]))
    with pytest.raises(TypeError, match="wait must be a positive number of seconds"):
        forkq.result(job["jid"], wait=-1)


def test_the_done_list_lives_no_longer_than_done_ttl(redis, recorder):
    job = queued_job(redis, result_ttl=3600)
    recorder.succeeded(redis, job, 1)
    assert 0 < redis.ttl(Keys().done(job["jid"])) <= results.DONE_TTL


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_thousand_waiters_block_in_redis_and_all_wake_at_the_end(redis, recorder):
    """1,000 threads and 1,000 coroutines wait on one job: Redis serves 3 commands per waiter
    in all (read, blocking pop, read; plus its connection's set-up), however long the wait."""
    job = queued_job(redis)
    redis.config_resetstat()
    got = []

    def wait_in_thread():
        got.append(forkq.result(job["jid"], wait=120))

    async def wait_in_loop():
        async def one():
            got.append(await forkq.aresult(job["jid"], wait=120))
        await asyncio.gather(*[one() for _ in range(1000)])

    threads = [threading.Thread(target=wait_in_thread) for _ in range(1000)]
    threads.append(threading.Thread(target=lambda: asyncio.run(wait_in_loop())))
    # The waiters wait long enough for the last of them to connect on a loaded machine (in one
    # parallel run the first ones gave up at 30 s, before the last were in).
    started = time.monotonic()
    for thread in threads:
        thread.start()
    wait_for(lambda: blocked_clients(redis) == 2000, timeout=100, message="2,000 blocked waiters")
    recorder.succeeded(redis, job, "done")
    for thread in threads:
        thread.join(30)
    assert len(got) == 2000 and {r.status for r in got} == {"succeeded"}
    stats = {k: v["calls"] for k, v in redis.info("commandstats").items()}
    print("commands served to 2,000 waiters:", stats)
    # One blocking pop per waiter and WAIT_SLICE seconds waited, not a loop of reads: on a
    # loaded machine the first waiters may block again before the last one is in.
    slices = math.ceil((time.monotonic() - started) / results.WAIT_SLICE)
    assert 2000 <= stats["cmdstat_blmove"] <= 2000 * slices
    # each waiter's read before the wait and after it, and the writer's read of the record
    assert stats["cmdstat_get"] == 4001
    setup = {"cmdstat_client", "cmdstat_hello", "cmdstat_info", "cmdstat_config"}
    job_writes = {"cmdstat_evalsha", "cmdstat_eval", "cmdstat_set", "cmdstat_del",
                  "cmdstat_rpush", "cmdstat_expire"}
    assert set(stats) - setup - job_writes == {"cmdstat_blmove", "cmdstat_get"}, stats
