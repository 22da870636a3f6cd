"""Periodic jobs hosted by real ``forkq start`` masters: leader takeover after kill -9, start-up
checks, entries from code, and what ``forkqctl status`` and the metrics show."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import e2e_jobs  # noqa: F401 (registers the jobs the entries name)

from forkq.periodic import leader as periodic_leader, master as periodic_master
from forkq.keys import Keys
from forkq.metrics.periodic import periodic_series
from harness import free_port
from helpers import wait_for
from test_supervisor import scrape

#: the queue periodic test jobs go to: no test master consumes it, so it counts enqueues
TICKS = "ticks"
PING = {"name": "ping", "class": "e2e_jobs.Record", "every": 1, "queue": TICKS}


def ticks(redis) -> list[dict]:
    """Payloads enqueued on ``TICKS``, oldest first."""
    return [json.loads(text) for text in reversed(redis.lrange(f"queue:{TICKS}", 0, -1))]


def leader_pid(redis) -> int | None:
    return periodic_leader.master_pid(redis.get(Keys().periodic_leader))


@pytest.mark.slow
@pytest.mark.fault
def test_two_masters_enqueue_each_tick_once_across_a_kill_9_of_the_leader(start_master, redis):
    masters = [start_master(processes=1, concurrency=1, periodic=[PING], periodic_lease=1)
               for _ in range(2)]
    by_pid = {master.pid: master for master in masters}
    first = by_pid[wait_for(lambda: leader_pid(redis), 15, message="a leader")]
    wait_for(lambda: len(ticks(redis)) >= 4, 10, message="4 ticks from the first leader")
    first.proc.kill()
    first.proc.wait()
    survivor = next(master for master in masters if master is not first)
    wait_for(lambda: leader_pid(redis) == survivor.pid, 5, message="the survivor leading")
    seen = len(ticks(redis))
    wait_for(lambda: len(ticks(redis)) >= seen + 4, 10, message="4 ticks from the new leader")

    payloads = ticks(redis)
    stamps = [payload["periodic"]["tick"] for payload in payloads]
    assert all(payload["periodic"]["name"] == "ping" for payload in payloads)
    assert all(payload["class"] == "e2e_jobs.Record" for payload in payloads)
    assert len(set(stamps)) == len(stamps), f"a tick enqueued twice: {stamps}"
    assert stamps == sorted(stamps) and all(tick == int(tick) for tick in stamps)
    missing = (stamps[-1] - stamps[0] + 1) - len(stamps)
    assert missing <= 1, f"{missing} ticks missed at the takeover: {stamps}"
    assert f"periodic: {redis.get(Keys().periodic_leader)} is now the leader" in survivor.log()


@pytest.mark.slow
def test_fractional_every_entries_keep_ticking_in_a_real_master(start_master, redis):
    """1.1 s and 0.1 s entries once stalled for good after a few ticks (float rounding)."""
    entries = [{**PING, "name": "slow", "every": 1.1}, {**PING, "name": "fast", "every": 0.1}]
    start_master(processes=1, concurrency=1, periodic=entries, periodic_lease=1)
    wait_for(lambda: leader_pid(redis), 15, message="a leader")
    wait_for(lambda: len([p for p in ticks(redis) if p["periodic"]["name"] == "slow"]) >= 6,
             15, message="6 ticks of the 1.1 s entry")
    for name, step in (("slow", 1100), ("fast", 100)):
        stamps = [round(p["periodic"]["tick"] * 1000) for p in ticks(redis)
                  if p["periodic"]["name"] == name]
        assert [b - a for a, b in zip(stamps, stamps[1:])] == [step] * (len(stamps) - 1)
    assert len(stamps) >= 50


def test_an_unknown_periodic_class_stops_start_up_with_one_line(start_master, redis):
    master = start_master(processes=1, periodic=[{**PING, "class": "e2e_jobs.Nope"}])
    assert master.wait_exit(15) == 1
    assert master.stderr().strip() == (
        f"forkq: {master.config_path}: periodic entry 'ping': unknown job class "
        f"'e2e_jobs.Nope'; name a job registered by the modules in 'require'")


def test_args_that_perform_cannot_take_stop_start_up(start_master, redis):
    master = start_master(processes=1, require=["e2e_jobs"],
                          periodic=[{**PING, "class": "e2e_jobs.Sleep", "args": [1, 2]}])
    assert master.wait_exit(15) == 1
    stderr = master.stderr().strip()
    assert "\n" not in stderr
    assert stderr == (f"forkq: {master.config_path}: periodic entry 'ping': 'args' [1, 2]: "
                      f"e2e_jobs.Sleep: perform(seconds: 'float') takes 1 argument, but 2 were "
                      f"given")


CODE_ENTRY = """
import forkq
import e2e_jobs

forkq.register_periodic("from-code", e2e_jobs.Record, every=1, args=["x"], queue="ticks")
"""


def test_an_entry_from_code_runs_and_forkqctl_status_names_the_leader(start_master, redis):
    port = free_port()
    master = start_master(processes=1, concurrency=1, require=["e2e_jobs", "schedule"],
                          modules={"schedule": CODE_ENTRY}, periodic_lease=1,
                          metrics={"bind": "127.0.0.1", "port": port})
    payload = wait_for(lambda: ticks(redis), 15, message="a tick enqueued")[0]
    assert (payload["args"], payload["periodic"]["name"]) == (["x"], "from-code")

    def reported():
        report = json.loads(forkqctl(master, "status", "--json").stdout)["periodic"]
        return report if report["entries"] and report["entries"][0]["last"] else None
    report = wait_for(reported, 10, message="the entry in forkqctl status")
    leader = report["leader"]
    assert leader["master_pid"] == master.pid
    assert leader["identity"].split(":")[:2] == [os.uname().nodename, str(master.pid)]
    entry = report["entries"][0]
    assert entry["name"] == "from-code" and entry["next"] > entry["last"]["tick"]
    assert entry["last"]["jid"] in {p["jid"] for p in ticks(redis)}
    text = forkqctl(master, "status").stdout
    assert f"periodic leader: {leader['identity']} (master pid {master.pid})" in text
    # Ticks come every second, so the text may name a later tick than the JSON read before it.
    shown = re.search(r"^  from-code  next=\S+ last=tick \S+ jid (\w+)$", text, re.M)
    assert shown and shown[1] in {p["jid"] for p in ticks(redis)}
    status = wait_for(lambda: (master.status() or {}).get("periodic", {}).get("leader")
                      and master.status(), 5, message="status.json naming the leader")
    assert status["periodic"]["identity"] == leader["identity"]
    wait_for(lambda: re.search(r'^forkq_periodic_enqueued_total\{entry="from-code"\} [1-9]',
                               scrape(port) or "", re.M), 10, message="the enqueue counted")
    assert "\nforkq_periodic_leader 1.0\n" in scrape(port)
    master.send(signal.SIGTERM)
    assert master.wait_exit(15) == 0
    assert redis.get(Keys().periodic_leader) is None, "a clean stop releases the lease"


def forkqctl(master, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forkq.ctl", *args, "-c", master.config_path],
                          cwd=str(master.dir), capture_output=True, text=True, timeout=30)


# --- in the test process: the master's scheduler step, and its metrics

def test_the_master_step_enqueues_with_the_tick_and_reports_leadership(redis, make_config):
    config = make_config(require=["e2e_jobs"], periodic=[PING], periodic_lease=1)
    scheduler = periodic_master.MasterPeriodic.from_config(config, os.getpid())
    assert scheduler.run(0.0) is True and scheduler.status()["leader"] is True
    # as if the last tick handled were a second before the current one
    redis.hset(Keys().periodic_cursor, "ping", math.floor(time.time()) - 1)
    scheduler.run(10.0)
    payloads = ticks(redis)
    assert payloads and all(p["queue"] == TICKS and p["periodic"]["name"] == "ping"
                            for p in payloads)
    assert scheduler.status() == {"identity": scheduler.identity, "leader": True,
                                  "enqueued": {"ping": len(payloads)}}
    assert scheduler.run(10.0) is False, "called again before its interval: no Redis call"


def test_redis_down_is_logged_once_and_its_return_once(redis, make_config, caplog):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(redis_url=f"redis://127.0.0.1:{port}/0", require=["e2e_jobs"],
                         periodic=[PING])
    scheduler = periodic_master.MasterPeriodic.from_config(config, os.getpid())
    with caplog.at_level(logging.INFO, logger="forkq"):
        for step in range(3):
            scheduler.run(step * 10.0)
        scheduler.url = make_config().redis_url
        scheduler.run(100.0)
        scheduler.run(110.0)
    messages = [r.getMessage() for r in caplog.records if "periodic: Redis" in r.getMessage()]
    assert len(messages) == 2
    assert messages[0].startswith("periodic: Redis unavailable (")
    assert messages[1].startswith("periodic: Redis is back after ")


def test_metrics_series_from_the_status_file():
    status = {"periodic": {"identity": "h:1:ab", "leader": True, "enqueued": {"ping": 3}}}
    enqueued, leader = periodic_series(status)
    assert [(s.name, s.labels, s.value) for s in enqueued.samples] == [
        ("forkq_periodic_enqueued_total", {"entry": "ping"}, 3.0)]
    assert [s.value for s in leader.samples] == [1.0]
    assert list(periodic_series({})) == []
