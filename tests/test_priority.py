"""Priority within a queue (``flow/placement.py``): the option, the key layout, the fetch order
in both modes, put-backs at their level, the admin reads, and real workers (order with two
processes, kill -9 recovery, idle wake-up)."""

import json
import re
import time

import pytest

import priority_jobs
from forkq import api
from forkq.config import Queue
from forkq.connection import make_client
from forkq.flow.cancel import CancelView, cancel
from forkq.flow.pause import PausedView
from forkq.flow.placement import PlacementView
from forkq.keys import Keys
from forkq.worker.fetch import Fetcher, FetchMode
from forkq.worker.ordering import QueueOrder
from forkq.worker.poller import Poller
from forkq.worker.services import Services
from helpers import wait_for
from test_worker import spawn, stop_all

Record = priority_jobs.Record
LISTS = ("forkq:inflight:t:0", "forkq:inflight:t:0:alt")


def fetcher(redis_url, mode=FetchMode.RELIABLE, keys=Keys()):
    take = Fetcher(make_client(redis_url), keys, queues=QueueOrder((Queue("default"),), True),
                   mode=mode, lists=LISTS, thread_index=0, idle_plan=("default",),
                   paused=PausedView(), cancels=CancelView(), placement=PlacementView())
    take.placement.update({"default"}, ())
    return take


def push(levels, *seconds):
    """One job per level given, labelled ``<level>:<index>``, in that order (working
    ``seconds`` when given, else ``Record``'s default)."""
    return [Record.set(priority=level).perform_async(f"{level}:{i}", *seconds)
            for i, level in enumerate(levels)]


def drain(take, batch=1):
    labels = []
    while True:
        take.batch = batch
        jobs = take.fetch()
        if not jobs:
            return labels
        labels += [json.loads(job.text)["args"][0] for job in jobs]


@pytest.mark.parametrize("bad", [101, -101, 1.5, "high", True])
def test_a_priority_out_of_range_or_not_a_whole_number_is_refused_where_it_is_written(redis,
                                                                                       bad):
    with pytest.raises(TypeError, match=r"option 'priority' must be a whole number from -100 "
                                        r"to 100 \(higher runs first"):
        Record.set(priority=bad).perform_async("x")
    with pytest.raises(TypeError, match="option 'priority'"):
        type("Bad", (priority_jobs.forkq.Job,), {"options": {"priority": bad},
                                                 "perform": lambda self: None})
    assert api.Queue("default").size == 0


def test_priority_zero_keeps_sidekiqs_layout_and_a_level_goes_to_forkqs_keys(redis):
    Record.perform_async("plain")
    Record.set(priority=5).perform_async("urgent")
    Record.set(priority=-2).perform_bulk([["low-a"], ["low-b"]])
    (plain,) = redis.lrange("queue:default", 0, -1)
    assert "priority" not in json.loads(plain)
    assert [json.loads(t)["args"][0] for t in redis.lrange("forkq:level:5:default", 0, -1)] == \
        ["urgent"]
    assert [json.loads(t)["args"][0] for t in redis.lrange("forkq:level:-2:default", 0, -1)] == \
        ["low-b", "low-a"]
    assert redis.zrange("forkq:levels:default", 0, -1, withscores=True) == [("-2", -2.0),
                                                                           ("5", 5.0)]
    assert redis.smembers("forkq:prioritized") == {"default"}
    assert redis.llen("forkq:bell:default") == 3
    assert redis.smembers("queues") == {"default"}


@pytest.mark.parametrize("mode", [FetchMode.RELIABLE, FetchMode.BASIC])
@pytest.mark.parametrize("batch", [1, 4])
def test_the_fetch_takes_higher_levels_first_fifo_within_a_level(redis, redis_url, mode, batch):
    push([0, 5, -3, 5, 10, 0, -3, 100, -100])
    take = fetcher(redis_url, mode)
    assert drain(take, batch) == ["100:7", "10:4", "5:1", "5:3", "0:0", "0:5", "-3:2", "-3:6",
                                  "-100:8"]
    assert not redis.exists("forkq:levels:default")  # each level left once it was empty


def test_levels_are_not_looked_at_by_a_process_that_knows_of_none(redis, redis_url):
    push([0, 5])
    take = fetcher(redis_url)
    take.placement.update((), ())
    assert drain(take) == ["0:0"]
    take.placement.update({"default"}, ())
    assert drain(take) == ["5:1"]


def test_a_released_job_goes_back_to_the_front_of_its_level(redis, redis_url):
    push([3, 3, 0])
    take = fetcher(redis_url)
    take.batch = 2
    jobs = take.fetch()
    assert take.release(jobs) == 2
    assert drain(take) == ["3:0", "3:1", "0:2"]


def test_the_poller_and_retry_now_move_jobs_to_their_level(redis, make_config):
    Record.set(priority=9).perform_in(1, "due")
    Record.set(priority=-9).perform_in(3600, "later")
    config = make_config()
    poller = Poller(Services.build(config, config.redis_url, "t:1:0"), recovery=None)
    assert poller.enqueue_due(now=time.time() + 2) == 1
    assert api.Queue("default").levels == {9: 1, 0: 0}
    assert api.ScheduledSet().add_all_to_queue() == 1
    assert api.Queue("default").levels == {9: 1, 0: 0, -9: 1}
    assert redis.llen("forkq:bell:default") == 2  # each move rang it


def test_admin_reads_count_every_level(redis):
    push([0, 4, 4, -1])
    queue = api.Queue("default")
    assert queue.size == 4 and queue.levels == {4: 2, 0: 1, -1: 1}
    assert [e.args for e in queue.jobs(level=4)] == [["4:2"], ["4:1"]]
    assert queue.latency >= 0 and api.default().stats()["enqueued"] == 4
    assert queue.delete(queue.jobs(level=-1)[0]) and queue.levels == {4: 2, 0: 1}
    jid = json.loads(redis.lindex("forkq:level:4:default", 0))["jid"]
    assert cancel(jid) == "queued" and queue.levels == {4: 1, 0: 1}
    queue.clear()
    assert queue.size == 0 and not redis.keys("forkq:level*") and not redis.keys("queue:*")


def assert_each_runner_started_by_priority(redis):
    """Every job was pushed before any worker started, so each fetch takes the highest job
    left: the jobs one thread ran, in the order it started them, go down by priority and, within
    a level, in push order. Across threads start order may differ from fetch order (a thread
    may hold a second job of its batch while another starts a later one)."""
    lines = sorted((line.split() for line in redis.lrange("prio:started", 0, -1)),
                   key=lambda line: float(line[1]))
    by_runner: dict[str, list[tuple[int, int]]] = {}
    for label, _, runner in lines:
        level, index = label.split(":")
        by_runner.setdefault(runner, []).append((-int(level), int(index)))
    assert len(by_runner) == 2, by_runner
    for runner, ranks in by_runner.items():
        assert ranks == sorted(ranks), (runner, ranks)


@pytest.mark.slow
def test_two_worker_processes_start_jobs_by_priority_fifo_within_a_level(redis, redis_url,
                                                                         tmp_path):
    levels = [0, 2, -5, 2, 7, 0, -5, 7, 2, 0] * 3
    push(levels)
    workers = [spawn(tmp_path, redis_url, f"w{i}.log", require=["priority_jobs"], concurrency=1)
               for i in range(2)]
    try:
        wait_for(lambda: redis.llen("prio:started") == len(levels), timeout=30,
                 message="every job started")
    finally:
        stop_all(workers, 15)
    assert_each_runner_started_by_priority(redis)


@pytest.mark.slow
@pytest.mark.fault
@pytest.mark.parametrize("options, key", [({"priority": 7}, "forkq:level:7:default"),
                                          ({"fair_key": "t1"}, "forkq:tenant:default,t1")])
def test_a_job_recovered_after_kill_9_goes_back_to_its_level_or_tenant(redis, redis_url,
                                                                        tmp_path, options, key):
    first = spawn(tmp_path, redis_url, "first.log", require=["priority_jobs"], concurrency=1)
    Record.set(**options).perform_async("victim", 60)
    wait_for(lambda: redis.llen("prio:started") == 1, timeout=15, message="the job started")
    first.kill()
    first.wait()
    api.Queue("default").pause()
    second = spawn(tmp_path, redis_url, "second.log", require=["priority_jobs"], timeout=1)
    try:
        wait_for(lambda: redis.llen(key) == 1, timeout=20,
                 message="the killed worker's job back in its place")
    finally:
        stop_all([second], 15)
    (text,) = redis.lrange(key, 0, -1)
    assert json.loads(text)["args"] == ["victim", 60] and api.Queue("default").size == 1


def idle_waiters(redis):
    return sum(1 for client in redis.client_list() if client.get("cmd") in ("brpop", "blmove"))


@pytest.mark.slow
def test_an_idle_worker_starts_a_prioritized_job_as_fast_as_a_plain_one(redis, redis_url,
                                                                        tmp_path):
    worker = spawn(tmp_path, redis_url, require=["priority_jobs"], concurrency=2)
    try:
        Record.set(priority=1).perform_async("known", 0)  # the queue now has levels
        wait_for(lambda: redis.llen("prio:started") == 1, timeout=15, message="first job")
        for round_, level in enumerate([3, 0, -4, 3, 0, 3]):
            wait_for(lambda: idle_waiters(redis) == 2, message="both threads idle")
            pushed = time.time()
            Record.set(priority=level).perform_async(f"{level}:{round_}", 0)
            wait_for(lambda: redis.llen("prio:started") == round_ + 2, timeout=5)
            started = float(redis.lindex("prio:started", -1).split()[1])
            # An unheard push waits for the next idle round: IDLE_TIMEOUT, 1 s.
            assert started - pushed < 0.4, (level, started - pushed)
    finally:
        stop_all([worker], 15)


def shown_arguments(page):
    """The arguments cells of a queue page (a clock in the page reads like "10:01")."""
    return re.findall(r'<code class="args">(.*?)</code>', page)


def test_the_queue_page_shows_each_level_and_deletes_a_job_of_one(redis, make_config):
    from forkq.web.app import App
    from test_web import Browser

    push([0, 6, 6, -2])
    web = Browser(App(make_config(), redis, environ={}))
    page = web.get("/queues/default").text
    assert "6 (2)" in page and "0 (1)" in page and "-2 (1)" in page
    assert "[&#34;0:0&#34;]" in shown_arguments(page)
    page = web.get("/queues/default?level=6").text
    assert sorted(shown_arguments(page)) == ['[&#34;6:1&#34;]', '[&#34;6:2&#34;]']
    (job,) = api.Queue("default").jobs(0, 1, level=6)
    web.post("/queues/default", {"action": "delete", "job": job.ident, "index": 0, "level": 6})
    assert api.Queue("default").levels == {6: 1, 0: 1, -2: 1}
    Record.set(fair_key="acme", queue="shared").perform_bulk([["acme0"], ["acme1"]])
    Record.set(fair_key="initech", queue="shared").perform_async("initech0")
    page = web.get("/queues/shared").text
    assert "2 tenants with jobs waiting" in page and "acme</a> (2), " in page
    page = web.get("/queues/shared?tenant=initech").text
    assert "initech0" in page and "acme0" not in page


# --- fair shares (fair_key)

class Tenanted(priority_jobs.forkq.Job):
    options = {"fair_key": lambda account, *rest: f"account-{account}"}

    def perform(self, account, label):
        pass


def labels(texts):
    return [json.loads(text)["args"][-1] for text in texts]


def test_a_fair_key_goes_to_its_tenants_list_and_joins_the_turns(redis):
    Record.set(fair_key="t1").perform_async("a")
    Record.set(fair_key="t1").perform_bulk([["b"], ["c"]])
    Tenanted.perform_async(7, "d")
    Tenanted.perform_bulk([[7, "e"], [8, "f"]])
    assert labels(redis.lrange("forkq:tenant:default,t1", 0, -1)) == ["c", "b", "a"]
    assert labels(redis.lrange("forkq:tenant:default,account-7", 0, -1)) == ["e", "d"]
    assert redis.zrange("forkq:turns:default", 0, -1, withscores=True) == [
        ("account-7", 0.0), ("account-8", 0.0), ("t1", 0.0)]
    assert redis.smembers("forkq:fair") == {"default"} and not redis.exists("queue:default")
    queue = api.Queue("default")
    assert queue.size == 6 and queue.tenants() == (3, [("t1", 3), ("account-7", 2),
                                                       ("account-8", 1)])


@pytest.mark.parametrize("options, message", [
    ({"fair_key": ""}, "option 'fair_key' must be a usable tenant name"),
    ({"fair_key": 42}, "option 'fair_key' must be a string naming the tenant"),
    ({"fair_key": "t\udc80"}, "option 'fair_key' must be a usable tenant name .a lone surrogate"),
    ({"fair_key": lambda *args: None}, "is code and cannot travel in a payload"),
    ({"fair_key": "t", "priority": 5}, "'fair_key' and 'priority' cannot be combined"),
])
def test_a_bad_fair_key_or_one_with_a_priority_is_refused(redis, options, message):
    with pytest.raises(TypeError, match=message):
        Record.set(**options).perform_async("x")
    assert api.Queue("default").size == 0


def test_a_priority_with_a_fair_key_is_refused_where_the_pair_is_first_written(redis):
    with pytest.raises(TypeError, match="'fair_key' and 'priority' cannot be combined"):
        type("Both", (priority_jobs.forkq.Job,), {"options": {"priority": 3, "fair_key": "t"},
                                                  "perform": lambda self: None})
    with pytest.raises(TypeError, match=r"Tenanted.perform_async: options 'fair_key' and "
                                        r"'priority' cannot be combined"):
        Tenanted.set(priority=2).perform_async(1, "x")
    assert api.Queue("default").size == 0


def test_a_fair_key_function_giving_no_name_is_refused_naming_the_class(redis):
    with pytest.raises(TypeError, match=r"Tenanted.perform_async: option 'fair_key' must "
                                        r"give a usable tenant name"):
        type("Tenanted", (Tenanted,), {"options": {"fair_key": lambda *a: "has space"}}
             ).perform_async(1, "x")


@pytest.mark.parametrize("mode", [FetchMode.RELIABLE, FetchMode.BASIC])
def test_the_fetch_takes_tenants_in_turn_each_fifo_and_plain_jobs_take_a_turn(redis, redis_url,
                                                                              mode):
    Record.set(fair_key="big").perform_bulk([[f"big{i}"] for i in range(6)])
    Record.set(fair_key="small").perform_bulk([["small0"], ["small1"]])
    Record.perform_async("plain0")
    take = fetcher(redis_url, mode)
    take.placement.update((), {"default"})
    order = drain(take, batch=4)
    assert order[:6] == ["plain0", "big0", "small0", "big1", "small1", "big2"]
    assert order[6:] == ["big3", "big4", "big5"]
    assert not redis.exists("forkq:turns:default")


def test_a_released_fair_job_goes_back_to_the_front_of_its_tenant(redis, redis_url):
    Record.set(fair_key="t").perform_bulk([["t0"], ["t1"]])
    take = fetcher(redis_url)
    take.placement.update((), {"default"})
    jobs = take.fetch()
    assert take.release(jobs) == 1
    assert drain(take) == ["t0", "t1"]


def commands_per_fetch(redis, take):
    """Redis commands one fetch of one job runs (the script's calls counted one by one)."""
    redis.config_resetstat()
    take.batch = 1
    assert len(take.fetch()) == 1
    stats = redis.info("commandstats")
    return sum(stat["calls"] for name, stat in stats.items()
               if name not in ("cmdstat_evalsha", "cmdstat_config", "cmdstat_info"))


def test_ten_thousand_tenants_cost_a_fetch_no_more_commands_than_ten(redis, redis_url):
    take = fetcher(redis_url)
    take.placement.update((), {"default"})
    counts = []
    for tenants in (10, 10_000):
        redis.flushall()
        pipe = redis.pipeline(transaction=False)
        for i in range(tenants):
            text = json.dumps({"class": "x", "args": [i], "queue": "default", "fair_key": f"t{i}"})
            pipe.lpush(f"forkq:tenant:default,t{i}", text, text)
            pipe.zadd("forkq:turns:default", {f"t{i}": 0})
        pipe.execute()
        redis.sadd("forkq:fair", "default")
        take.fetch()  # settles the first tenant's turn, as in a running queue
        counts.append(commands_per_fetch(redis, take))
    assert counts[0] == counts[1] and counts[0] <= 12, counts


def done(redis):
    return [line.split()[0] for line in redis.lrange("prio:started", 0, -1)]


@pytest.mark.slow
def test_a_tenant_behind_5000_jobs_of_another_is_done_within_about_100_of_them(redis, redis_url,
                                                                               tmp_path):
    # Jobs of 30 ms: each fetch takes one (worker/fetch.py's batch rule), so start order is
    # fetch order but for the 4 threads overtaking each other.
    Record.set(fair_key="A").perform_bulk([[f"A{i}"] for i in range(5000)])
    Record.set(fair_key="B").perform_bulk([[f"B{i}"] for i in range(50)])
    workers = [spawn(tmp_path, redis_url, f"w{i}.log", require=["priority_jobs"], concurrency=2)
               for i in range(2)]
    try:
        wait_for(lambda: sum(label.startswith("B") for label in done(redis)) == 50, timeout=60,
                 message="all of B's jobs")
    finally:
        stop_all(workers, 15)
    order = done(redis)
    last_b = max(i for i, label in enumerate(order) if label.startswith("B"))
    # Taken in turn, B's 50 go with 50 of A's: the last of B's is about the 100th job. The
    # margin is the jobs in flight between fetch and start (4 threads).
    assert last_b < 110, last_b
    # B's own jobs in push order, but for threads overtaking each other
    b_order = [int(label[1:]) for label in order if label.startswith("B")]
    assert sorted(b_order) == list(range(50))
    assert all(abs(position - index) < 4 for position, index in enumerate(b_order)), b_order


def test_the_asyncio_client_places_jobs_as_the_synchronous_one(redis):
    import asyncio

    async def push():
        await Record.set(priority=3).aperform_async("urgent")
        await Record.set(fair_key="t1").aperform_bulk([["t1-a"], ["t1-b"]])
        await Record.set(priority=-1, fair_key=None).aperform_async("low")

    asyncio.run(push())
    assert api.Queue("default").levels == {3: 1, 0: 0, -1: 1}
    assert api.Queue("default").tenants() == (1, [("t1", 2)])
