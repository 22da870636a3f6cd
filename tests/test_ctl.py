"""``forkqctl``: stop, quiet, dump and status against real masters; one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import psutil
import pytest

import e2e_jobs
from forkq import ctl
from forkq.api import Api
from forkq.keys import Keys
from helpers import wait_for


def run_ctl(capsys, *args: str) -> tuple[int, str, str]:
    code = ctl.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def sleeper():
    """A process that is not forkq, for the pidfile checks."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def test_errors_are_one_line_and_exit_1(capsys, tmp_path, sleeper):
    pidfile = tmp_path / "forkq.pid"
    code, _, err = run_ctl(capsys, "stop")
    assert (code, err) == (1, "forkqctl: no pidfile: pass --pidfile, or -c with a config that "
                              "sets 'pidfile'\n")
    code, _, err = run_ctl(capsys, "quiet", "--pidfile", str(pidfile))
    assert (code, err) == (1, f"forkqctl: pidfile {pidfile} not found (is forkq running?)\n")

    pidfile.write_text(f"{sleeper.pid}\n")
    code, _, err = run_ctl(capsys, "dump", "--pidfile", str(pidfile))
    assert code == 1 and err == (f"forkqctl: pid {sleeper.pid} from {pidfile} is not a forkq "
                                 f"process (stale pidfile, pid reused)\n")
    stale = subprocess.Popen(["true"])
    stale.wait()
    pidfile.write_text(f"{stale.pid}\n")
    code, _, err = run_ctl(capsys, "stop", "--pidfile", str(pidfile))
    assert code == 1 and "is not running (stale pidfile)" in err


def test_status_says_when_redis_is_unreachable(capsys, tmp_path):
    config = tmp_path / "forkq.yml"
    config.write_text("redis_url: redis://:secret@127.0.0.1:1/0\n")
    code, out, err = run_ctl(capsys, "status", "-c", str(config))
    assert code == 1 and out == ""
    assert err.startswith("forkqctl: cannot reach Redis at redis://127.0.0.1:1/0: ")
    assert "secret" not in err and len(err.splitlines()) == 1


def test_stop_sigkills_a_master_that_outlives_the_timeout_and_exits_1(capsys, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(ctl, "STOP_MARGIN", 0.5)
    # A stopped process named forkq: TSTP and TERM stay pending, only SIGKILL ends it.
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "forkq"])
    try:
        stuck.send_signal(signal.SIGSTOP)
        pidfile = tmp_path / "forkq.pid"
        pidfile.write_text(f"{stuck.pid}\n")
        code, out, _ = run_ctl(capsys, "stop", "--timeout", "0.5", "--pidfile", str(pidfile))
        assert code == 1 and "sent SIGKILL" in out
        assert stuck.wait(5) == -signal.SIGKILL
    finally:
        stuck.kill()
        stuck.wait()


@pytest.mark.slow
def test_stop_exits_0_when_jobs_are_requeued_at_the_deadline(capsys, start_master, redis,
                                                              tmp_path):
    pidfile = str(tmp_path / "forkq.pid")
    master = start_master(timeout=1, pidfile=pidfile)
    master.ready_pids(2)
    jid = e2e_jobs.Sleep.perform_async(30)
    wait_for(lambda: redis.hexists("e2e:started", jid), 10, message="job started")
    # -c: the pidfile and the timeout come from the config.
    code, out, _ = run_ctl(capsys, "stop", "-c", master.config_path)
    assert code == 0 and f"forkq master {master.pid} stopped in" in out
    assert master.wait_exit(1) == 0
    assert redis.llen("queue:default") == 1


@pytest.mark.slow
def test_status_quiet_and_dump_on_a_running_master(capsys, start_master, redis, tmp_path):
    pidfile = str(tmp_path / "forkq.pid")
    master = start_master(pidfile=pidfile, tag="ctl")
    pids = master.ready_pids(2)
    api = Api(redis, Keys())
    wait_for(lambda: len(api.processes()) == 2, 5, message="two heartbeats")
    e2e_jobs.Record.set(queue="parked").perform_async()

    code, out, _ = run_ctl(capsys, "status", "-c", master.config_path, "--json")
    report = json.loads(out)
    assert code == 0
    assert sorted(p["pid"] for p in report["processes"]) == sorted(pids)
    assert {p["tag"] for p in report["processes"]} == {"ctl"}
    assert all(p["concurrency"] == 3 and p["rss_kb"] > 0 and p["beat_age"] < 5 and
               not p["quiet"] for p in report["processes"])
    assert [(q["name"], q["size"]) for q in report["queues"]] == [("parked", 1)]
    assert (report["retries"], report["scheduled"], report["dead"]) == (0, 0, 0)

    assert run_ctl(capsys, "quiet", "--pidfile", pidfile)[0] == 0
    wait_for(lambda: all(p.quiet for p in api.processes()), 5, message="quiet heartbeats")
    code, out, _ = run_ctl(capsys, "status", "-c", master.config_path)
    assert code == 0 and out.count(" QUIET") == 2 and "parked  size=1" in out
    assert "retries=0 scheduled=0 dead=0" in out

    assert run_ctl(capsys, "dump", "--pidfile", pidfile)[0] == 0
    wait_for(lambda: master.log().count("thread heartbeat") == 2, 5, message="stack dumps")
    assert psutil.Process(master.pid).status() != psutil.STATUS_ZOMBIE
