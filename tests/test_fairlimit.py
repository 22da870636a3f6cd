"""The per-tenant concurrency cap ``fair_limit`` (``flow/fairlimit.py``): the option, the fetch
skipping a tenant at its limit, the counts given back by every way a job ends, and real
workers (two processes, kill -9 recovery)."""

import json
import time

import pytest

import priority_jobs
from forkq import api
from forkq.flow import fairlimit
from forkq.keys import Keys
from forkq.worker.fetch import FetchMode
from helpers import wait_for
from test_priority import drain, fetcher
from test_worker import spawn, stop_all

Record = priority_jobs.Record


def running(redis):
    return fairlimit.running(redis, Keys(), "default")


def fair_fetcher(redis_url, mode=FetchMode.RELIABLE, lists=None):
    take = fetcher(redis_url, mode) if lists is None else fetcher_on(redis_url, mode, lists)
    take.placement.update((), {"default"})
    return take


def fetcher_on(redis_url, mode, lists):
    take = fetcher(redis_url, mode)
    take.lists = lists
    return take


@pytest.mark.parametrize("bad", [0, -1, 10_001, 1.5, "2", True])
def test_a_bad_fair_limit_is_refused_naming_the_option(redis, bad):
    with pytest.raises(TypeError, match=r"option 'fair_limit' must be a whole number from 1 "
                                        r"to 10000 \(jobs of one tenant running at once\)"):
        Record.set(fair_key="t", fair_limit=bad).perform_async("x")
    with pytest.raises(TypeError, match="option 'fair_limit'"):
        type("Bad", (priority_jobs.forkq.Job,), {"options": {"fair_limit": bad},
                                                 "perform": lambda self: None})
    assert api.Queue("default").size == 0


def test_a_fair_limit_without_a_fair_key_is_refused(redis):
    with pytest.raises(TypeError, match="option 'fair_limit' caps the jobs of one tenant and "
                                        "needs a 'fair_key'"):
        Record.set(fair_limit=2).perform_async("x")
    assert api.Queue("default").size == 0


def test_the_payload_carries_the_limit(redis):
    Record.set(fair_key="t", fair_limit=3).perform_bulk([["a"], ["b"]])
    Record.set(fair_key="t", fair_limit=3).perform_async("c")
    texts = redis.lrange("forkq:tenant:default,t", 0, -1)
    assert [json.loads(text)["fair_limit"] for text in texts] == [3, 3, 3]


@pytest.mark.parametrize("mode", [FetchMode.RELIABLE, FetchMode.BASIC])
def test_a_tenant_at_its_limit_is_skipped_and_keeps_its_turn(redis, redis_url, mode):
    Record.set(fair_key="a", fair_limit=2).perform_bulk([[f"a{i}"] for i in range(4)])
    Record.set(fair_key="b").perform_bulk([[f"b{i}"] for i in range(4)])
    one = fair_fetcher(redis_url, mode)
    two = fair_fetcher(redis_url, mode, ("forkq:inflight:t:1", "forkq:inflight:t:1:alt"))
    three = fair_fetcher(redis_url, mode, ("forkq:inflight:t:2", "forkq:inflight:t:2:alt"))
    held = [json.loads(j.text)["args"][0] for take in (one, two, three) for j in take.fetch()]
    assert held == ["a0", "b0", "a1"] and running(redis) == {"a": 2}
    # a is at its limit: a fourth thread's fetch serves b only, a keeps the oldest turn
    four = fair_fetcher(redis_url, mode, ("forkq:inflight:t:3", "forkq:inflight:t:3:alt"))
    four.batch = 4
    assert labels(four.fetch()) == ["b1", "b2", "b3"]
    assert redis.zrange("forkq:turns:default", 0, -1) == ["a"]
    one.batch = 4
    assert labels(one.fetch()) == ["a2"]  # a0 acknowledged: room for one, a3 waits
    assert running(redis) == {"a": 2}
    assert labels(three.fetch()) == ["a3"]  # a1 acknowledged
    for take in (one, three):
        take.fetch()
    assert running(redis) == {} and api.Queue("default").size == 0


def labels(jobs):
    return [json.loads(job.text)["args"][0] for job in jobs]


def test_a_lone_limited_tenant_takes_no_more_than_its_limit_in_one_batch(redis, redis_url):
    Record.set(fair_key="a", fair_limit=3).perform_bulk([[f"a{i}"] for i in range(10)])
    take = fair_fetcher(redis_url)
    take.batch = 10
    assert len(take.fetch()) == 3 and running(redis) == {"a": 3}


@pytest.mark.parametrize("limited, found", [(fairlimit.LOOK_AHEAD + 1, True),
                                             (fairlimit.LOOK_AHEAD + 2, False)])
def test_the_look_ahead_passes_over_so_many_tenants_at_their_limit(redis, redis_url, limited,
                                                                   found):
    for i in range(limited):
        Record.set(fair_key=f"t{i}", fair_limit=1).perform_bulk([[f"t{i}-0"], [f"t{i}-1"]])
    Record.set(fair_key="z").perform_async("z-0")
    holders = [fair_fetcher(redis_url, lists=(f"forkq:inflight:h:{i}", f"forkq:inflight:h:{i}:a"))
               for i in range(limited + 1)]
    assert sorted(label for h in holders[:limited] for label in labels(h.fetch())) == \
        sorted(f"t{i}-0" for i in range(limited))
    redis.zadd("forkq:turns:default", {"z": 10**9})  # z's turn after every limited tenant's
    assert labels(holders[limited].fetch()) == (["z-0"] if found else [])


def test_a_release_gives_back_all_but_the_kept_job(redis, redis_url):
    Record.set(fair_key="a", fair_limit=5).perform_bulk([[f"a{i}"] for i in range(3)])
    take = fair_fetcher(redis_url)
    jobs = take.fetch()
    take.batch = 2
    jobs = take.fetch()  # a0 acknowledged
    assert labels(jobs) == ["a1", "a2"] and running(redis) == {"a": 2}
    take.release(jobs[1:], keep=jobs[0])
    assert running(redis) == {"a": 1} and api.Queue("default").size == 1
    take.release([jobs[0]])
    assert running(redis) == {} and api.Queue("default").size == 2
