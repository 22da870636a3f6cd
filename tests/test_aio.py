"""The asyncio client on a real Redis and a real event loop: same payloads as the sync client,
and the loop keeps running while a push waits on Redis."""

import asyncio
import json
import time

import pytest
import redis as redis_py
from redis.asyncio.sentinel import MasterNotFoundError

import forkq
from forkq import aio, client, connection
from forkq.connection import aio as aio_connection
from jobs import Record, Shared, add
from harness import free_port


def run(coroutine):
    async def main():
        try:
            return await coroutine
        finally:
            await aio.aclose()

    return asyncio.run(main())


def queued(redis, name="default"):
    return [json.loads(t) for t in redis.lrange(f"queue:{name}", 0, -1)]


def test_perform_async_pushes_what_the_sync_client_pushes(redis):
    Shared.set(queue="critical", retry=3).perform_async(1, "x")
    jid = run(aio.perform_async(Shared, 1, "x", queue="critical", retry=3))
    sync_job, async_job = reversed(queued(redis, "critical"))
    assert async_job["jid"] == jid
    for varying in ("jid", "created_at", "enqueued_at"):
        sync_job.pop(varying), async_job.pop(varying)
    assert async_job == sync_job
    assert redis.smembers("queues") == {"critical"}


def test_function_jobs_and_the_schedule(redis):
    run(aio.perform_async(add, 1, 2))
    assert queued(redis, "other")[0]["class"] == "jobs.add"
    before = time.time()
    later = run(aio.perform_in(Record, 60, "later"))
    run(aio.perform_at(Record, 1893456000.0, "far"))
    (first, score), (_, far) = redis.zrange("schedule", 0, -1, withscores=True)
    assert json.loads(first)["jid"] == later and "enqueued_at" not in json.loads(first)
    assert before + 59 < score < time.time() + 61 and far == 1893456000.0


def test_perform_bulk_pushes_in_batches(redis):
    jids = run(aio.perform_bulk(Record, [[i] for i in range(25)], batch_size=10, queue="bulk"))
    assert len(set(jids)) == 25
    assert [job["args"] for job in queued(redis, "bulk")][::-1] == [[i] for i in range(25)]
    with pytest.raises(TypeError, match=r"jobs.Record.aperform_bulk: item 1 is a tuple"):
        run(aio.perform_bulk(Record, [[1], (2,)]))


def test_bad_arguments_and_options_fail_at_the_call(redis):
    with pytest.raises(TypeError, match=r"jobs.Record.aperform_async: args\[0\] is a builtins.set"):
        run(aio.perform_async(Record, {1}))
    with pytest.raises(TypeError, match="unknown job option 'colour'"):
        run(aio.perform_in(Record, 5, 1, colour="red"))
    with pytest.raises(ValueError, match="jobs.Record.aperform_bulk: batch_size is 0"):
        run(aio.perform_bulk(Record, [[1]], batch_size=0))
    assert redis.llen("queue:default") == 0 and redis.zcard("schedule") == 0


def test_client_middleware_may_stop_a_push(redis):
    def refuse_odd(job_class, payload, queue, call_next):
        return None if payload["args"][0] % 2 else call_next()

    chain = client.default().middleware
    chain.add_client(refuse_odd)
    try:
        assert run(aio.perform_async(Record, 1)) is None
        assert len(run(aio.perform_bulk(Record, [[1], [2], [4]]))) == 2
    finally:
        chain.client.remove(refuse_odd)
    assert [job["args"] for job in queued(redis)] == [[4], [2]]


def test_the_namespace_is_the_sync_clients(redis):
    forkq.configure(namespace="app")
    try:
        run(aio.perform_async(Record, 1))
    finally:
        forkq.configure(namespace="")
    assert redis.llen("app:queue:default") == 1


def test_the_loop_keeps_running_while_redis_holds_a_push(redis, redis_url):
    """Redis pauses writers for 0.5 s; a ticker task must tick during the push."""
    admin = redis_py.Redis.from_url(redis_url)
    ticks = []

    async def ticker(stop):
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    async def scenario():
        await aio.redis().ping()
        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        admin.execute_command("CLIENT", "PAUSE", 500, "WRITE")
        started = time.monotonic()
        jid = await aio.perform_async(Record, "paused")
        finished = time.monotonic()
        stop.set()
        await ticking
        return jid, started, finished

    jid, started, finished = run(scenario())
    admin.close()
    assert finished - started >= 0.3, "the pause did not hold the push"
    during = [t for t in ticks if started < t < finished]
    assert len(during) >= 5, f"the loop ticked {len(during)} times during a {finished - started:.2f} s push"
    assert queued(redis)[0]["jid"] == jid


def test_aperform_methods_on_jobs_setters_and_function_jobs(redis):
    async def scenario():
        return (await Record.aperform_async(1),
                await Shared.set(queue="critical").aperform_async(1, 2),
                await add.aperform_async(3, 4),
                await Record.aperform_in(60, "later"),
                await add.set(retry=1).aperform_at(1893456000.0, 5, 6),
                await Record.set(result_ttl=30).aperform_bulk([[7], [8]]))

    one, shared, added, later, at, bulk = run(scenario())
    assert [job["jid"] for job in queued(redis)] == bulk[::-1] + [one]
    assert queued(redis, "critical")[0]["jid"] == shared
    assert queued(redis, "other")[0]["args"] == [3, 4]
    scheduled = {json.loads(text)["jid"]: score
                 for text, score in redis.zrange("schedule", 0, -1, withscores=True)}
    assert set(scheduled) == {later, at} and scheduled[at] == 1893456000.0
    assert [forkq.result(jid).status for jid in bulk] == ["queued", "queued"]
    with pytest.raises(TypeError, match=r"jobs.Record.aperform_in: seconds must be a number"):
        run(Record.aperform_in("soon", 1))
    with pytest.raises(ValueError, match=r"more than 100 years from now"):
        run(Record.aperform_at(1893456000000.0, 1))
    with pytest.raises(ValueError, match=r"jobs.Record.aperform_in: seconds is an int of 1329 "
                                         r"bits; pass a finite number"):
        run(aio.perform_in(Record, 10 ** 400, 1))
    with pytest.raises(ValueError, match=r"jobs.Record.aperform_in: seconds 1e\+300 is more "
                                         r"than the longest delay"):
        run(Record.aperform_in(1e300, 1))


def test_the_arity_of_perform_is_checked_as_by_the_sync_client(redis):
    with pytest.raises(TypeError, match=r"HardJob.aperform_async: perform\(a, b\) takes 2 "
                                        r"arguments, but 1 were given"):
        run(Shared.aperform_async(1))
    with pytest.raises(TypeError, match=r"aperform_bulk: item 1: perform\(a, b\) takes 2"):
        run(aio.perform_bulk(Shared, [[1, 2], [1]]))
    assert redis.llen("queue:default") == 0


# --- the same checks and unique locks as the sync client -------------------------------------

class AioReport(forkq.Job):
    options = {"unique_for": 60}

    def perform(self, day):
        pass


def test_a_unique_job_takes_its_lock_in_the_asyncio_client(redis):
    async def scenario():
        first = await aio.perform_async(AioReport, "mon")
        again = await AioReport.aperform_async("mon")
        other = await aio.perform_async(AioReport, "tue")
        bulk = await aio.perform_bulk(AioReport, [["mon"], ["wed"], ["wed"]])
        return first, again, other, bulk

    first, again, other, bulk = run(scenario())
    assert first and other and again is None and len(bulk) == 1
    jobs = queued(redis)
    assert sorted(job["args"][0] for job in jobs) == ["mon", "tue", "wed"]
    for job in jobs:
        assert redis.get(f"forkq:unique:{job['unique_digest']}") == job["jid"]
        assert 59 < redis.pttl(f"forkq:unique:{job['unique_digest']}") / 1000 <= 60


def test_a_scheduled_unique_job_holds_its_lock_until_its_run_time_plus_unique_for(redis):
    jid = run(aio.perform_in(AioReport, 100, "later"))
    assert run(aio.perform_in(AioReport, 5, "later")) is None
    job = json.loads(redis.zrange("schedule", 0, -1)[0])
    assert job["jid"] == jid and 159 < redis.pttl(f"forkq:unique:{job['unique_digest']}") / 1000


@pytest.mark.parametrize("timestamp", [1.9e12, float("nan"), float("inf")])
def test_perform_at_refuses_milliseconds_and_non_finite_timestamps(redis, timestamp):
    with pytest.raises(ValueError, match=r"jobs.Record.aperform_at: .*(milliseconds|finite)"):
        run(aio.perform_at(Record, timestamp, 1))
    assert redis.zcard("schedule") == 0


def test_per_call_and_unique_options_are_checked_as_by_set(redis):
    with pytest.raises(TypeError, match="'retry_in' is code"):
        run(aio.perform_async(Record, 1, retry_in=lambda count, exc: 5))
    with pytest.raises(TypeError, match="'retry_in' is code"):
        run(aio.perform_bulk(Record, [[1]], retry_in=lambda count, exc: 5))
    with pytest.raises(TypeError, match="'unique_until' needs 'unique_for'"):
        run(aio.perform_async(Record, 1, unique_until="start"))
    with pytest.raises(TypeError, match="'unique_for' must be a positive number"):
        run(aio.perform_bulk(Record, [[1]], unique_for=-1))
    assert redis.llen("queue:default") == 0


def test_the_asyncio_client_reads_the_url_as_forkq_does(redis, redis_url):
    forkq.configure(redis_url=redis_url + ("&" if "?" in redis_url else "?") +
                    "wait_replicas=1&wait_timeout=0.05")
    with pytest.raises(connection.ReplicaTimeoutError, match="confirmed by 0 of 1"):
        run(aio.perform_async(Record, 1))

def test_a_sentinel_url_asks_the_sentinels_and_keeps_passwords_out_of_errors(redis):
    """No sentinel listens: the push fails naming the service, never a password (the
    failover itself: ``test_sentinel.py``)."""
    forkq.configure(redis_url=f"redis+sentinel://app:data-secret@127.0.0.1:{free_port()}/"
                              f"mymaster?sentinel_password=sentinel-secret")
    with pytest.raises(MasterNotFoundError, match="No master found for 'mymaster'") as failed:
        run(aio.perform_async(Record, 1))
    assert "secret" not in str(failed.value)


def test_the_clients_of_loops_closed_without_aclose_are_let_go(redis):
    async def push_and_count() -> int:
        await aio.perform_async(Record, 1)
        return len(aio_connection._clients)

    counts = [asyncio.run(push_and_count()) for _ in range(3)]
    assert counts == [1, 1, 1] and redis.llen("queue:default") == 3
