"""The manager's shutdown contract on a real Redis: quiet stops fetching; ``stop(deadline)``
lets running jobs finish until the deadline; what still runs then, and what was fetched but
not started, goes back to the front of its queue. None is lost."""

import time

import pytest

import jobs
from async_jobs import Nap
from forkq import api
from forkq.worker.manager import Manager
from forkq.worker.services import Services
from helpers import wait_for


@pytest.fixture
def manager(redis, make_config):
    """Build a manager (its processors not started) on a fresh ``Services``; stopped at
    teardown."""
    built = []

    def make(**values):
        values.setdefault("concurrency", 1)
        config = make_config(**values)
        services = Services.build(config, config.redis_url, f"test:{len(built)}:0")
        built.append(Manager(services=services))
        return built[-1]

    jobs.gate.clear()
    yield make
    jobs.gate.set()
    for made in built:
        if not made.services.stopped.is_set():
            made.stop(time.monotonic() + 5)


def values(redis, key):
    return redis.lrange(key, 0, -1)


def queued_args():
    """The default queue's jobs, front (next to run) first."""
    return [entry.args for entry in reversed(api.Queue("default").jobs(0, 100))]


def private_jobs(redis):
    return [key for key in redis.keys("forkq:inflight:*") if redis.llen(key)]


def test_quiet_stops_fetching_and_running_jobs_finish(redis, manager):
    workers = manager(concurrency=2)
    workers.start()
    jobs.wait_for_gate.perform_async("held")
    wait_for(lambda: values(redis, "started") == ["held"])
    workers.quiet()
    # the idle thread leaves its blocking fetch within IDLE_TIMEOUT and fetches no more
    wait_for(lambda: sum(p.is_alive() for p in workers.processors) == 1,
             message="the idle thread stopped")
    jobs.Record.perform_async("pushed after the quiet")
    jobs.gate.set()
    wait_for(lambda: values(redis, "ran") == ["held"], message="the running job finished")
    wait_for(lambda: not any(p.is_alive() for p in workers.processors),
             message="every thread stopped")
    assert queued_args() == [["pushed after the quiet"]]
    assert len(workers.services.work_state.running()) == 0 and private_jobs(redis) == []


def test_stop_lets_running_jobs_finish_before_the_deadline(redis, manager):
    workers = manager(concurrency=1)
    workers.start()
    jobs.slow.perform_async("short", 1.0)
    wait_for(lambda: values(redis, "started") == ["short"])
    began = time.monotonic()
    requeued = workers.stop(began + 10)
    assert time.monotonic() - began < 5  # returned when the job ended, not at the deadline
    assert requeued == 0 and values(redis, "ran") == ["short"]
    assert api.Queue("default").size == 0 and private_jobs(redis) == []
    assert workers.services.stopped.is_set()


def test_at_the_deadline_running_and_prefetched_jobs_go_back_to_the_front(redis, manager):
    workers = manager(concurrency=1)
    (processor,) = workers.processors
    processor.fetcher.batch = 3  # one fetch takes the blocking job and the two behind it
    jobs.wait_for_gate.perform_async("running")
    jobs.Record.perform_async("prefetched 1")
    jobs.Record.perform_async("prefetched 2")
    workers.start()
    wait_for(lambda: values(redis, "started") == ["running"])
    assert api.Queue("default").size == 0  # all three are held by the thread
    jobs.Record.perform_async("pushed later")
    began = time.monotonic()
    requeued = workers.stop(began + 0.5)
    assert 0.5 <= time.monotonic() - began < 5
    assert requeued == 3
    assert queued_args() == [["running"], ["prefetched 1"], ["prefetched 2"], ["pushed later"]]
    assert values(redis, "ran") == [] and private_jobs(redis) == []
    assert len(workers.services.work_state.running()) == 0


def test_at_the_deadline_a_running_coroutine_job_goes_back_to_its_queue(redis, manager):
    workers = manager(concurrency=1)
    workers.start()
    jid = Nap.perform_async(30)
    wait_for(lambda: redis.hget("async:started", jid) == "1", message="the coroutine job running")
    wait_for(lambda: len(workers.services.work_state.running()) == 1,
             message="published as running")
    requeued = workers.stop(time.monotonic() + 0.5)
    assert requeued == 1
    assert [entry.jid for entry in api.Queue("default").jobs()] == [jid]
    assert private_jobs(redis) == [] and len(workers.services.work_state.running()) == 0


def counted(services) -> int:
    """Jobs the process's per-class metrics counted (taken: the count starts again)."""
    return sum(each.processed for each in services.job_metrics.take().values())


def test_a_batchs_jobs_are_counted_once_it_ends(redis, manager):
    workers = manager(concurrency=1)
    (processor,) = workers.processors
    processor.fetcher.batch = 3
    for value in ("a", "b", "c"):
        jobs.Record.perform_async(value)
    workers.start()
    services = workers.services
    wait_for(lambda: services.work_state.jobs_done == 3, message="the batch counted as done")
    assert values(redis, "ran") == ["a", "b", "c"]
    assert len(services.work_state.running()) == 0 and counted(services) == 3


def test_jobs_ended_before_the_deadline_are_counted_when_their_batch_is_taken_back(
        redis, manager):
    workers = manager(concurrency=1)
    (processor,) = workers.processors
    processor.fetcher.batch = 3  # two quick jobs, then one that runs past the deadline
    jobs.Record.perform_async("a")
    jobs.Record.perform_async("b")
    jobs.wait_for_gate.perform_async("running")
    workers.start()
    wait_for(lambda: values(redis, "started") == ["running"])
    services = workers.services
    assert len(services.work_state.running()) == 1
    assert workers.stop(time.monotonic() + 0.5) == 1
    assert services.work_state.jobs_done == 2 and counted(services) == 2
    assert len(services.work_state.running()) == 0 and queued_args() == [["running"]]
