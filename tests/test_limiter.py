"""Limiters on the real Redis: concurrent slots and leases, fixed windows, token buckets."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import psutil
import pytest
import redis as redis_py

from forkq import aio, limiter
from forkq.keys import Keys
from forkq.limiter import OverLimit
from forkq.values import MAX_SECONDS
from helpers import LogLines, wait_for

KEYS = Keys()


@pytest.mark.parametrize("make, message", [
    (lambda: limiter.concurrent("", 2), "name must be a non-empty string"),
    (lambda: limiter.concurrent("c", 0), "limiter 'c': limit must be a whole number >= 1, not 0"),
    (lambda: limiter.concurrent("c", 2.5), "not 2.5"),
    (lambda: limiter.concurrent("c", True), "not True"),
    (lambda: limiter.concurrent("c", 2, lock_timeout=0), "lock_timeout must be a positive"),
    (lambda: limiter.concurrent("c", 2, lock_timeout=float("inf")), "not inf"),
    (lambda: limiter.concurrent("c", 2, retry_wait=(5, 1)), "retry_wait must be"),
    (lambda: limiter.concurrent("c", 2, retry_wait=3), "retry_wait must be"),
    (lambda: limiter.window("w", 2, -1), "limiter 'w': seconds must be a positive"),
    (lambda: limiter.bucket("b", 2, "1"), "not '1'"),
    # beyond Redis' PX range every entry would fail: refused here, naming the bound
    (lambda: limiter.window("w", 2, 1e300), "limiter 'w': seconds must be a positive number of "
                                            "seconds up to 3153600000 (100 years), not 1e+300"),
    (lambda: limiter.bucket("b", 2, 1e300), "limiter 'b': seconds must be a positive"),
    (lambda: limiter.concurrent("c", 2, lock_timeout=1e300), "lock_timeout must be a positive"),
    (lambda: limiter.concurrent("c", 2, retry_wait=(1, 1e300)), "retry_wait must be"),
])
def test_bad_arguments_fail_at_construction(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


@pytest.mark.parametrize("make", [
    lambda: limiter.window("w-max", 1, MAX_SECONDS),
    lambda: limiter.bucket("b-max", 1, MAX_SECONDS),
    lambda: limiter.concurrent("c-max", 1, lock_timeout=MAX_SECONDS),
])
def test_the_longest_duration_accepted_is_one_redis_stores(redis, make):
    with make():
        pass
    assert all(0 < redis.pttl(key) for key in redis.keys("forkq:limiter:*"))


def test_construction_opens_no_connection(redis):
    # this process's sockets, not the server's client count: another test's leftover thread
    # may connect meanwhile
    before = len(psutil.Process().net_connections(kind="all"))
    limiter.concurrent("c", 2), limiter.window("w", 2, 1), limiter.bucket("b", 2, 1)
    assert len(psutil.Process().net_connections(kind="all")) == before
    assert redis.keys("*") == []


def test_over_limit_escapes_a_jobs_except_exception():
    with pytest.raises(OverLimit):
        try:
            raise OverLimit("x", 1.5)
        except Exception:
            pass
    assert OverLimit("x", 1.5).retry_in == 1.5


def test_concurrent_limit_two_across_ten_threads(redis):
    slots = limiter.concurrent("api", 2, lock_timeout=10, retry_wait=(0.01, 0.02))
    inside, most, entries, lock = [0], [0], [0], threading.Lock()

    def worker():
        done = 0
        while done < 3:
            try:
                with slots:
                    with lock:
                        inside[0] += 1
                        most[0] = max(most[0], inside[0])
                        entries[0] += 1
                    time.sleep(0.02)  # the limited work
                    with lock:
                        inside[0] -= 1
                done += 1
            except OverLimit as over:
                assert 0.01 <= over.retry_in <= 0.02
                time.sleep(over.retry_in)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert entries[0] == 30
    assert most[0] == 2
    assert redis.zcard(KEYS.limiter("concurrent", "api")) == 0


def test_a_killed_holders_slot_comes_back_after_lock_timeout(redis):
    slot = limiter.concurrent("one", 1, lock_timeout=0.3)
    slot.__enter__()  # a holder that dies: it never leaves
    taken = time.monotonic()
    assert 0 < redis.pttl(KEYS.limiter("concurrent", "one")) <= 300
    with pytest.raises(OverLimit) as over:
        with slot:
            pass
    assert 1.0 <= over.value.retry_in <= 5.0

    def enters():
        try:
            with slot:
                return time.monotonic()
        except OverLimit:
            return None
    entered = wait_for(enters, timeout=5, message="the lease to lapse")
    assert entered - taken >= 0.25


def admitted(limit) -> bool:
    try:
        with limit:
            return True
    except OverLimit:
        return False


def test_a_window_admits_exactly_limit_per_window_aligned_to_the_epoch(redis):
    per_window = limiter.window("mail", 3, 2.0)
    key = KEYS.limiter("window", "mail")
    for _ in range(3):  # a try that straddles a window boundary is repeated
        results = [admitted(per_window) for _ in range(5)]
        window_before = int(redis.hget(key, "window"))
        seconds, micros = redis.time()
        if window_before == (seconds * 1000 + micros // 1000) // 2000:
            break
    assert results == [True, True, True, False, False]
    with pytest.raises(OverLimit) as over:
        with per_window:
            pass
    assert 0 < over.value.retry_in <= 2.0
    assert 0 < redis.pttl(key) <= 2000
    wait_for(lambda: admitted(per_window), timeout=over.value.retry_in + 2,
             message="the next window")
    assert int(redis.hget(key, "window")) == window_before + 1


def test_a_bucket_refills_at_its_rate(redis):
    tokens = limiter.bucket("sms", 5, 1.0)  # 5 tokens, one more every 0.2 s
    assert [admitted(tokens) for _ in range(6)] == [True] * 5 + [False]
    with pytest.raises(OverLimit) as over:
        with tokens:
            pass
    assert 0 < over.value.retry_in <= 0.2
    start = time.monotonic()
    count = 0
    while time.monotonic() - start < 1.0:
        count += admitted(tokens)
        time.sleep(0.01)
    assert 4 <= count <= 6
    assert 0 < redis.pttl(KEYS.limiter("bucket", "sms")) <= 1001


def test_a_script_flushed_from_redis_is_loaded_again(redis):
    tokens = limiter.bucket("flushed", 2, 1.0)
    assert admitted(tokens)
    redis.script_flush()
    assert admitted(tokens)
    assert not admitted(tokens)


# --- coroutines: several share the loop's thread ----------------------------------------------

async def hold(slots, form: str, entered: asyncio.Event, leave: asyncio.Event) -> None:
    if form == "with":  # the blocking form, still allowed in a coroutine
        with slots:
            entered.set()
            await leave.wait()
    else:
        async with slots:
            entered.set()
            await leave.wait()


@pytest.mark.parametrize("form", ["with", "async with"])
def test_interleaved_coroutines_each_leave_their_own_slot(redis, form):
    slots = limiter.concurrent("loop", 2, lock_timeout=10)
    key = KEYS.limiter("concurrent", "loop")

    def members():
        return set(redis.zrange(key, 0, -1))

    async def a_enters_b_enters_a_leaves_b_leaves():
        a_in, a_out, b_in, b_out = (asyncio.Event() for _ in range(4))
        a = asyncio.create_task(hold(slots, form, a_in, a_out))
        await a_in.wait()
        (a_holder,) = members()
        b = asyncio.create_task(hold(slots, form, b_in, b_out))
        await b_in.wait()
        (b_holder,) = members() - {a_holder}
        a_out.set()
        await a
        assert members() == {b_holder}  # A's slot is free, B's still held
        b_out.set()
        await b
        assert members() == set()
        await aio.aclose()

    asyncio.run(a_enters_b_enters_a_leaves_b_leaves())


def test_async_with_admits_and_refuses_as_with_does(redis):
    one = limiter.concurrent("one-async", 1, lock_timeout=10, retry_wait=(0.2, 0.3))
    tokens = limiter.bucket("sms-async", 2, 10.0)

    async def use():
        async with one:
            assert redis.zcard(KEYS.limiter("concurrent", "one-async")) == 1
            with pytest.raises(OverLimit) as sync_over:
                with one:
                    pass
            with pytest.raises(OverLimit) as async_over:
                async with one:
                    pass
        for _ in range(2):
            async with tokens:
                pass
        with pytest.raises(OverLimit) as bucket_over:
            async with tokens:
                pass
        await aio.aclose()
        return sync_over.value, async_over.value, bucket_over.value

    sync_over, async_over, bucket_over = asyncio.run(use())
    assert 0.2 <= sync_over.retry_in <= 0.3 and 0.2 <= async_over.retry_in <= 0.3
    assert 4.0 < bucket_over.retry_in <= 5.0  # one token every 5 s
    assert redis.zcard(KEYS.limiter("concurrent", "one-async")) == 0
    assert not admitted(tokens)  # the same bucket as the blocking form's


def test_async_with_loads_a_flushed_script_and_logs_a_failed_release(redis):
    slot = limiter.concurrent("flushed-async", 1, lock_timeout=10)
    key = KEYS.limiter("concurrent", "flushed-async")

    async def enter_after_flush_then_break_the_key():
        redis.script_flush()
        async with slot:
            redis.delete(key)
            redis.set(key, "not a sorted set")  # ZREM at the exit fails: WRONGTYPE
        await aio.aclose()

    with LogLines() as lines:
        asyncio.run(enter_after_flush_then_break_the_key())
    assert any("limiter 'flushed-async': slot not released (WRONGTYPE" in line
               for line in lines), lines


# --- interrupted entries and releases: the holder must not outlive them ------------------------

# Holds Redis' only thread for ARGV[1] microseconds: commands sent meanwhile wait, unread, and
# run after it even if their client has closed the connection by then.
BUSY_SCRIPT = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1])
return 1
"""


def keep_redis_busy(redis_url, seconds: float) -> threading.Thread:
    """Start a script that holds Redis for ``seconds``; return once Redis no longer answers."""
    def busy():
        with redis_py.Redis.from_url(redis_url) as client:
            client.eval(BUSY_SCRIPT, 0, int(seconds * 1_000_000))

    def redis_is_busy():
        with redis_py.Redis.from_url(redis_url, socket_timeout=0.05) as probe:
            try:
                return not probe.ping()
            except redis_py.TimeoutError:
                return True

    thread = threading.Thread(target=busy)
    thread.start()
    wait_for(redis_is_busy, timeout=5, message="the busy script to hold Redis")
    return thread


def evalsha_calls(redis) -> int:
    return redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


@pytest.mark.fault
def test_an_entry_cancelled_awaiting_its_reply_leaves_no_holder(redis, redis_url):
    slot = limiter.concurrent("cancelled-entry", 1, lock_timeout=30)
    key = KEYS.limiter("concurrent", "cancelled-entry")

    async def enter_cancelled_while_redis_is_busy():
        async with slot:  # loads the script, opens the loop's client
            pass
        calls = evalsha_calls(redis)
        busy = keep_redis_busy(redis_url, 0.5)
        with pytest.raises(asyncio.TimeoutError):  # a job's time limit, say
            await asyncio.wait_for(slot.__aenter__(), 0.1)
        await asyncio.get_running_loop().run_in_executor(None, busy.join)
        await aio.aclose()
        return calls

    calls = asyncio.run(enter_cancelled_while_redis_is_busy())
    wait_for(lambda: evalsha_calls(redis) > calls, timeout=5,
             message="the cancelled entry's admit script to run")
    wait_for(lambda: redis.zcard(key) == 0, timeout=2, message="the holder to be removed")
    with slot:  # the only slot is free at once, not after lock_timeout
        pass


@pytest.mark.fault
def test_a_release_cancelled_while_redis_is_paused_still_frees_the_slot(redis):
    if tuple(map(int, redis.info("server")["redis_version"].split(".")[:2])) < (6, 2):
        pytest.skip("CLIENT PAUSE ... WRITE needs Redis >= 6.2")
    slot = limiter.concurrent("cancelled-release", 1, lock_timeout=30)
    key = KEYS.limiter("concurrent", "cancelled-release")

    async def leave_cancelled_while_writes_wait():
        await slot.__aenter__()
        redis.client_pause(400, all=False)  # the release's ZREM waits on the server
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slot.__aexit__(None, None, None), 0.05)
        assert redis.zcard(key) == 1
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: wait_for(lambda: redis.zcard(key) == 0, timeout=3,
                                   message="the shielded release to run"))
        await aio.aclose()

    asyncio.run(leave_cancelled_while_writes_wait())
