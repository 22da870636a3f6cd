"""Pausing a queue: the paused set, the fetch script's check, and two worker processes that
stop and resume taking a paused queue's jobs."""

import json
import threading
import time

import pytest

import control_jobs
from forkq import api
from forkq.config import Queue as QueueSpec
from forkq.connection import make_client
from forkq.flow import pause
from forkq.flow.control import INTERVAL
from forkq.flow.cancel import CancelView
from forkq.flow.pause import PausedView
from forkq.flow.placement import PlacementView
from forkq.keys import Keys
from forkq.worker.fetch import Fetcher, FetchMode
from forkq.worker.ordering import QueueOrder
from helpers import wait_for
from test_worker import spawn, stop_all

LISTS = ("forkq:inflight:t:0", "forkq:inflight:t:0:alt")


def fetcher(redis_url, keys=Keys()):
    queues = QueueOrder((QueueSpec("media"), QueueSpec("default")), strict=True)
    return Fetcher(make_client(redis_url), keys, queues=queues, mode=FetchMode.RELIABLE,
                   lists=LISTS, thread_index=0, idle_plan=("media", "default"),
                   paused=PausedView(), cancels=CancelView(),
                   placement=PlacementView())


def test_pause_resume_and_paused_through_the_api(redis):
    queue = api.Queue("media")
    assert not queue.paused
    assert queue.pause() and not queue.pause()
    assert queue.paused and api.default().paused_queues() == {"media"}
    assert queue.resume() and not queue.resume()
    assert not queue.paused and api.default().paused_queues() == set()


@pytest.mark.parametrize("namespace", ["", "app"])
def test_the_fetch_script_skips_a_paused_queue_its_process_knows_of(redis, redis_url,
                                                                    namespace):
    keys = Keys(namespace or None)
    take = fetcher(redis_url, keys)
    redis.lpush(keys.queue("media"), '{"jid":"m1","class":"x","args":[]}')
    redis.lpush(keys.queue("default"), '{"jid":"d1","class":"x","args":[]}')
    pause.pause(redis, keys, "media")
    # The process's copy knows of a pause (another queue's, here): the script reads the
    # paused set itself, so a copy behind Redis does not matter.
    take.paused.update({"other"})
    assert [job.queue for job in take.fetch()] == ["default"]
    assert [job.queue for job in take.fetch()] == []
    assert redis.llen(keys.queue("media")) == 1
    pause.resume(redis, keys, "media")
    assert [job.queue for job in take.fetch()] == ["media"]


def test_an_idle_wait_skips_paused_queues_and_waits_when_all_are(redis, redis_url):
    take = fetcher(redis_url)
    take.paused.update({"media", "default"})
    redis.lpush("queue:media", '{"jid":"m1","class":"x","args":[]}')
    started = time.monotonic()
    assert take.wait(threading.Event()) == [] and time.monotonic() - started >= 0.9
    take.paused.update({"media"})
    assert take.wait(threading.Event()) == [] and redis.llen("queue:media") == 1


def test_a_job_an_idle_wait_took_from_a_queue_paused_meanwhile_goes_back(redis, redis_url):
    take = fetcher(redis_url)
    take.idle_plan = ("media",)
    paused_meanwhile = threading.Timer(0.2, lambda: take.paused.update({"media"}))
    pusher = threading.Timer(0.3, lambda: redis.lpush("queue:media", '{"jid":"m1"}'))
    paused_meanwhile.start()
    pusher.start()
    assert take.wait(threading.Event()) == []
    assert redis.lrange("queue:media", 0, -1) == ['{"jid":"m1"}'] and not redis.keys(
        "forkq:inflight:*")


def runs(redis, queue):
    return [line for line in redis.lrange("control:runs", 0, -1) if line.startswith(queue)]


@pytest.mark.slow
def test_two_workers_stop_taking_a_paused_queue_and_resume_it(redis, redis_url, tmp_path):
    workers = [spawn(tmp_path, redis_url, f"worker{i}.log", require=["control_jobs"],
                     queues=["media", "default"], concurrency=3) for i in range(2)]
    try:
        wait_for(lambda: len(api.default().processes()) == 2, timeout=20, message="2 workers")
        api.Queue("media").pause()
        # The contract's bound: every worker sees a pause within a second.
        time.sleep(2 * INTERVAL)
        media = [control_jobs.Media.perform_async(i) for i in range(20)]
        for i in range(5):
            control_jobs.Plain.perform_async(i)
        wait_for(lambda: len(runs(redis, "default")) == 5, timeout=15, message="default jobs")
        latency = api.Queue("media").latency
        wait_for(lambda: api.Queue("media").latency > latency + 0.2, message="latency grows")
        assert runs(redis, "media") == [] and api.Queue("media").size == 20
        api.Queue("media").resume()
        wait_for(lambda: len(runs(redis, "media")) == 20, timeout=15, message="media jobs")
        assert sorted(runs(redis, "media")) == sorted(f"media {i}" for i in range(20))
        assert len(media) == 20 and api.Queue("media").size == 0
    finally:
        stop_all(workers, 15)


def test_forkqctl_pauses_resumes_and_status_shows_it(capsys, tmp_path, redis, redis_url):
    from forkq import ctl

    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: {redis_url}\ndata_dir: {tmp_path / 'data'}\n")
    control_jobs.Plain.perform_async(1)
    assert ctl.main(["pause", "reports", "-c", str(config)]) == 0
    assert "queue reports paused" in capsys.readouterr().out
    assert ctl.main(["pause", "default", "-c", str(config)]) == 0
    assert ctl.main(["status", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "default  size=1 latency=" in out and out.count(" PAUSED") == 2
    assert "reports  size=0" in out
    assert ctl.main(["resume", "default", "-c", str(config)]) == 0
    assert "queue default resumed" in capsys.readouterr().out
    assert ctl.main(["status", "-c", str(config), "--json"]) == 0
    queues = {q["name"]: q["paused"] for q in json.loads(capsys.readouterr().out)["queues"]}
    assert queues == {"default": False, "reports": True}


def test_a_process_that_knows_of_no_pause_leaves_the_check_out_of_its_fetch(redis, redis_url):
    """The cost of pausing is nothing while nothing is paused: the script does not read the
    set. A pause reaches such a process through its control watch, within half a second."""
    take = fetcher(redis_url)
    redis.lpush("queue:media", '{"jid":"m1","class":"x","args":[]}')
    pause.pause(redis, Keys(), "media")
    redis.config_resetstat()
    assert [job.queue for job in take.fetch()] == ["media"]
    assert "cmdstat_exists" not in redis.info("commandstats")
