"""Resumable jobs (``flow/iterable.py``): the cursor saved as items go, a retry resuming from
it, a worker's TERM stopping the job between items, and kill -9 costing at most the items since
the last save."""

from __future__ import annotations

import collections
import json
import re
import signal

import pytest

import forkq
from forkq.flow.iterable import Interrupted
from forkq.keys import Keys
from helpers import wait_for
from iterable_jobs import Export, Sparse
from test_worker import spawn

KEYS = Keys()


def items(redis) -> list[int]:
    return [int(n) for n in redis.lrange("iter:items", 0, -1)]


class StopAfter:
    """A quiet event that is set once ``count`` items ran."""

    def __init__(self, redis, count: int) -> None:
        self.redis, self.count = redis, count

    def is_set(self) -> bool:
        return self.redis.llen("iter:items") >= self.count


def job(cls, jid: str, quiet=None):
    instance = cls()
    instance.jid, instance.payload, instance.quiet = jid, {}, quiet
    return instance


def test_a_shutdown_stops_between_items_and_the_next_run_resumes(redis):
    with pytest.raises(Interrupted):
        job(Sparse, "a" * 24, StopAfter(redis, 5)).perform(10)
    assert items(redis) == [0, 1, 2, 3, 4]
    # saved at the stop, although it saves every 3 items
    assert json.loads(redis.get(KEYS.iteration("a" * 24)))["cursor"] == 4
    job(Sparse, "a" * 24).perform(10)
    assert items(redis) == list(range(10))
    assert json.loads(redis.get(KEYS.iteration("a" * 24))) == {"done": True}
    job(Sparse, "a" * 24).perform(10)  # run again after it finished: nothing to do
    assert items(redis) == list(range(10))
    assert 0 < redis.ttl(KEYS.iteration("a" * 24)) <= 30 * 86400


def test_the_cursor_is_saved_every_n_items(redis):
    class Crash(Exception):
        pass

    class Crashing(Sparse):
        def each_iteration(self, n, count):
            if n == 7:
                raise Crash()
            super().each_iteration(n, count)

    with pytest.raises(Crash):
        job(Crashing, "b" * 24).perform(10)
    assert json.loads(redis.get(KEYS.iteration("b" * 24)))["cursor"] == 5  # items 0-2, 3-5
    job(Sparse, "b" * 24).perform(10)
    assert items(redis) == [0, 1, 2, 3, 4, 5, 6, 6, 7, 8, 9]  # 6 ran twice: after the save


def test_a_cursor_that_is_not_json_fails_naming_it(redis):
    class Odd(Sparse):
        cursor_every = 1

        def build_enumerator(self, count, *, cursor):
            return iter([(1, object())])

    with pytest.raises(TypeError, match="Odd: the cursor .* is not JSON"):
        job(Odd, "c" * 24).perform(1)


def test_a_retry_resumes_from_the_cursor(redis, start_worker):
    Export.perform_async(10, 0, 4)
    start_worker()
    wait_for(lambda: len(items(redis)) == 10, 10, message="10 items")
    assert items(redis) == list(range(10))  # 0-3 not run again by the retry


@pytest.mark.slow
def test_term_puts_the_job_back_and_another_worker_resumes_it(redis, redis_url, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    jid = Export.perform_async(40, 0.02)
    first = spawn(tmp_path / "a", redis_url, require=["iterable_jobs"], timeout=10)
    try:
        wait_for(lambda: len(items(redis)) >= 5, 15, message="5 items")
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
    finally:
        first.kill()
    stopped_at = len(items(redis))
    assert stopped_at < 40 and redis.zcard("schedule") + redis.llen("queue:default") == 1
    second = spawn(tmp_path / "b", redis_url, require=["iterable_jobs"])
    try:
        wait_for(lambda: len(items(redis)) >= 40, 20, message="40 items")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)
    assert items(redis) == list(range(40))  # nothing ran twice
    assert json.loads(redis.get(KEYS.iteration(jid))) == {"done": True}


@pytest.mark.slow
@pytest.mark.fault
def test_after_kill_9_at_most_the_item_in_flight_runs_again(redis, redis_url, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    Export.perform_async(40, 0.02)
    first = spawn(tmp_path / "a", redis_url, require=["iterable_jobs"], heartbeat_ttl=2)
    try:
        wait_for(lambda: len(items(redis)) >= 5, 15, message="5 items")
        first.send_signal(signal.SIGKILL)
        first.wait(5)
    finally:
        first.kill()
    second = spawn(tmp_path / "b", redis_url, require=["iterable_jobs"], heartbeat_ttl=2)
    try:
        wait_for(lambda: len(set(items(redis))) >= 40, 30, message="40 distinct items")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)
    counts = collections.Counter(items(redis))
    assert set(counts) == set(range(40))
    assert sum(n - 1 for n in counts.values()) <= 1


def test_the_busy_page_shows_a_running_jobs_saved_cursor(redis, make_config):
    import time

    from forkq.api import Api
    from forkq.web.app import App
    from test_web import Browser

    identity = "host:1:abc"
    redis.sadd("processes", identity)
    redis.hset(identity, mapping={"info": json.dumps({"hostname": "host", "pid": 1}),
                                  "busy": 2, "beat": time.time()})
    for thread, jid in (("t1", "d" * 24), ("t2", "e" * 24)):
        redis.hset(f"{identity}:work", thread, json.dumps(
            {"queue": "default", "run_at": int(time.time()),
             "payload": json.dumps({"class": "iterable_jobs.Export", "args": [], "jid": jid})}))
    redis.set(KEYS.iteration("d" * 24), json.dumps({"cursor": {"after": 41}, "at": 1.0}))
    cursors = {w.job.jid: w.cursor for w in Api(redis).workers()}
    assert cursors == {"d" * 24: {"after": 41}, "e" * 24: None}
    page = Browser(App(make_config(), redis, environ={})).get("/busy").text
    assert re.search(r"cursor <code>\{(&#34;|&quot;)after(&#34;|&quot;): ?41\}</code>", page)


class CancelAfter:
    """A process's cancel view that knows of the job's cancel once ``count`` items ran."""

    def __init__(self, redis, count: int) -> None:
        self.redis, self.count = redis, count

    def requested(self, jid) -> bool:
        return self.redis.llen("iter:items") >= self.count


def test_a_cancel_stops_between_items_saving_the_cursor(redis):
    instance = job(Sparse, "c" * 24)
    instance.cancels = CancelAfter(redis, 4)
    with pytest.raises(forkq.Cancelled, match="cancelled between items"):
        instance.perform(10)
    assert items(redis) == [0, 1, 2, 3]
    assert json.loads(redis.get(KEYS.iteration("c" * 24)))["cursor"] == 3
