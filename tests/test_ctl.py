"""``forkqctl``: stop, quiet, dump and status against real masters; one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import e2e_jobs
from forkq import ctl
from forkq.supervisor import pidfile
from forkq.api import Api
from forkq.api.processes import parse_process
from forkq.keys import Keys
from helpers import stop_process, wait_for
from masters import tail_forkq_log  # noqa: F401 (a fixture)


def run_ctl(capsys, *args: str) -> tuple[int, str, str]:
    code = ctl.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def record_of(process, age: float = 0.0) -> str:
    """A pidfile written by ``process``; ``age`` seconds earlier: one its pid now reuses."""
    return pidfile.record_text(process.pid, psutil.Process(process.pid).create_time() - age)


@pytest.mark.parametrize("command", ["stop", "quiet", "dump"])
@pytest.mark.parametrize("stale", ["pid and an earlier start time", "pid only"])
def test_a_stale_pidfile_naming_another_forkq_process_is_refused_and_it_survives(
        capsys, tmp_path, tail_forkq_log, command, stale):
    path = tmp_path / "master.pid"
    path.write_text(record_of(tail_forkq_log, 3600) if stale.startswith("pid and")
                    else f"{tail_forkq_log.pid}\n")
    code, out, err = run_ctl(capsys, command, "--pidfile", str(path))
    assert (code, out) == (1, "")
    assert err == (f"forkqctl: pid {tail_forkq_log.pid} from {path} is not the forkq master "
                   f"that wrote it (stale pidfile)\n")
    assert tail_forkq_log.poll() is None
    assert psutil.Process(tail_forkq_log.pid).status() != psutil.STATUS_STOPPED


@pytest.mark.parametrize("contents", [b"-1\n", b"0\n", b"garbage\n", b"99999999999999999999\n",
                                      b"", b"\xff\xfe\n", b"1\n"])
def test_a_pidfile_without_a_usable_pid_is_a_one_line_error(tmp_path, contents):
    path = tmp_path / "master.pid"
    path.write_bytes(contents)
    # A separate process: a signal to pid -1 or 0 must not reach the test run if it is sent.
    result = subprocess.run([sys.executable, "-m", "forkq.ctl", "quiet", "--pidfile", str(path)],
                            capture_output=True, text=True, timeout=30, start_new_session=True)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"forkqctl: pidfile {path} does not hold a pid") or \
        result.stderr.startswith("forkqctl: pid 1 from ")


def test_missing_pidfiles_and_exited_pids_are_one_line_errors(capsys, tmp_path):
    config = tmp_path / "forkq.yml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    code, _, err = run_ctl(capsys, "stop", "-c", str(config))
    assert (code, err) == (1, f"forkqctl: pidfile {tmp_path / 'data' / 'master.pid'} not found "
                              f"(is forkq running from this directory with this config?)\n")
    exited = subprocess.Popen(["true"])
    exited.wait()
    path = tmp_path / "forkq.pid"
    path.write_text(pidfile.record_text(exited.pid, 0.0))
    code, _, err = run_ctl(capsys, "stop", "--pidfile", str(path))
    assert (code, err) == (1, f"forkqctl: pid {exited.pid} from {path} is not running (stale "
                              f"pidfile)\n")


def test_status_says_when_redis_is_unreachable(capsys, tmp_path):
    config = tmp_path / "forkq.yml"
    config.write_text("redis_url: redis://:secret@127.0.0.1:1/0\n")
    code, out, err = run_ctl(capsys, "status", "-c", str(config))
    assert code == 1 and out == ""
    assert err.startswith("forkqctl: cannot reach Redis at redis://127.0.0.1:1/0: ")
    assert "secret" not in err and len(err.splitlines()) == 1


@pytest.fixture
def stuck_master(tmp_path):
    """A stopped process named forkq, in a pidfile: ``(process, pidfile path)``. TSTP and TERM
    stay pending, only SIGKILL ends it."""
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "forkq"])
    try:
        # stopped before its exec, it would still be a copy of this process, not named forkq
        wait_for(lambda: "forkq" in psutil.Process(stuck.pid).cmdline(), 10,
                 message="the child's exec")
        stop_process(stuck.pid)
        path = tmp_path / "forkq.pid"
        path.write_text(record_of(stuck))
        yield stuck, str(path)
    finally:
        stuck.kill()
        stuck.wait()


def test_stop_sigkills_a_master_that_outlives_the_timeout_and_exits_1(capsys, stuck_master,
                                                                       monkeypatch):
    monkeypatch.setattr(ctl, "STOP_MARGIN", 0.5)
    stuck, path = stuck_master
    code, out, _ = run_ctl(capsys, "stop", "--timeout", "0.5", "--pidfile", path)
    assert code == 1 and "sent SIGKILL" in out
    assert stuck.wait(5) == -signal.SIGKILL


def test_ctrl_c_while_stop_waits_for_the_master_says_interrupted_without_a_traceback(
        stuck_master):
    stuck, path = stuck_master
    command = subprocess.Popen(
        [sys.executable, "-m", "forkq.ctl", "stop", "--timeout", "30", "--pidfile", path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the stopped master holds the TERM pending: forkqctl is then waiting for it to exit
        wait_for(lambda: pending_signals(stuck.pid) & (1 << (signal.SIGTERM - 1)), 15,
                 message="TERM sent to the master")
        command.send_signal(signal.SIGINT)
        _, err = command.communicate(timeout=15)
        assert command.returncode == 130 and err == "forkqctl: interrupted\n"
    finally:
        command.kill()
        command.wait()


def pending_signals(pid: int) -> int:
    """The signals pending for the whole process ``pid``, as a bit mask (``/proc``)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("ShdPnd:"))
    return int(line.split()[1], 16)


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


def forkqctl(master, *args: str) -> subprocess.CompletedProcess:
    """``forkqctl`` as an operator types it, in the directory the master runs in."""
    script = os.path.join(os.path.dirname(sys.executable), "forkqctl")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return subprocess.run([script, *args], cwd=master.dir, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.slow
def test_the_readme_commands_find_a_master_started_without_a_pidfile(capsys, start_master,
                                                                     redis):
    # The default data_dir (.forkq, in the master's directory) and no pidfile.
    master = start_master(tag="ctl", data_dir=None)
    pids = master.ready_pids(2)
    api = Api(redis, Keys())
    wait_for(lambda: len(api.processes()) == 2, 5, message="two heartbeats")
    e2e_jobs.Record.set(queue="parked").perform_async()

    status = forkqctl(master, "status", "-c", "forkq.yml", "--json")
    report = json.loads(status.stdout)
    assert status.returncode == 0
    assert report["master"] == {"pid": master.pid, "pidfile": ".forkq/master.pid"}
    assert sorted(p["pid"] for p in report["processes"]) == sorted(pids)
    assert all(p["tag"] == "ctl" and p["concurrency"] == 3 and p["rss_kb"] > 0 and
               0 <= p["beat_age"] < 5 and not p["quiet"] for p in report["processes"])
    # default: the queue the workers listen to, listed before anything was pushed to it
    assert [(q["name"], q["size"]) for q in report["queues"]] == [("default", 0), ("parked", 1)]
    assert report["totals"] == {"processes": 2, "threads": 6, "busy": 0, "queued": 1,
                                "scheduled": 0, "retries": 0, "dead": 0, "processed": 0,
                                "failed": 0, "cancelled": 0}

    quiet = forkqctl(master, "quiet", "-c", "forkq.yml")
    assert (quiet.returncode, quiet.stderr) == (0, "")
    wait_for(lambda: all(p.quiet for p in api.processes()), 5, message="quiet heartbeats")
    text = forkqctl(master, "status", "-c", "forkq.yml").stdout
    assert f"master: pid {master.pid} (.forkq/master.pid)" in text
    assert "totals: processes=2 threads=6 busy=0 queued=1 scheduled=0 retries=0 dead=0 " \
           "processed=0 failed=0" in text
    assert text.count(" QUIET") == 2 and "parked  size=1" in text and " s ago" in text

    assert forkqctl(master, "dump", "-c", "forkq.yml").returncode == 0
    wait_for(lambda: master.log().count("thread heartbeat") == 2, 5, message="stack dumps")

    stop = forkqctl(master, "stop", "--timeout", "25", "-c", "forkq.yml")
    assert stop.returncode == 0 and f"forkq master {master.pid} stopped in" in stop.stdout
    assert master.wait_exit(5) == 0
    assert not os.path.exists(os.path.join(master.data_dir, "master.pid"))


def test_status_escapes_what_an_attacker_wrote_to_redis(capsys, tmp_path, redis, redis_url):
    keys, identity = Keys(), "host\x1b]0;pwned\x07:1:abc"
    info = {"hostname": "web\r\x1b[2Jhost", "pid": "1\n2", "tag": "\x1b[31mred\u2028",
            "labels": "l\x00", "queues": ["q\x1b[0m"], "concurrency": "lots"}
    redis.sadd(keys.processes, identity)
    redis.hset(keys.process(identity), mapping={"info": json.dumps(info), "busy": 0,
                                                "beat": "nan"})
    redis.sadd(keys.queues, "evil\n\x1b[1mqueue")
    redis.lpush(keys.queue("evil\n\x1b[1mqueue"), "{}")
    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: {redis_url}\ndata_dir: {tmp_path / 'data'}\n")

    code, out, _ = run_ctl(capsys, "status", "-c", str(config))
    assert code == 0
    assert not any(char in out for char in "\x1b\r\x00\x07\u2028")
    assert len(out.splitlines()) == 7, out  # the queue the process listens to is listed too
    assert r"  q\x1b[0m  size=0" in out
    assert r"evil\n\x1b[1mqueue  size=1" in out and r"tag=\x1b[31mred\u2028" in out
    assert "beat=?" in out and "busy=0/0" in out and r"labels=l\x00" in out
    code, out, _ = run_ctl(capsys, "status", "-c", str(config), "--json")
    report = json.loads(out)
    assert report["processes"][0]["tag"] == info["tag"] and report["totals"]["threads"] == 0
    assert report["master"]["pid"] is None and "not found" in report["master"]["problem"]
    assert not any(char in out for char in "\x1b\r\x00\x07\u2028")


def test_stop_help_says_what_the_timeout_and_the_config_default_are(capsys):
    with pytest.raises(SystemExit):
        ctl.main(["stop", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "seconds forkqctl waits for the master" in text and "SIGKILL" in text
    assert "jobs get to finish" not in text
    assert "$FORKQ_CONFIG when set, else ./forkq.yml" in text


def test_status_shows_bad_records_as_bad_and_exits_0(capsys, tmp_path, redis, redis_url):
    keys, deep = Keys(), "[" * 5000 + "]" * 5000
    redis.sadd(keys.processes, "deep:1:abc", "queue:x")
    redis.hset(keys.process("deep:1:abc"), mapping={"info": deep, "rss": "9" * 400})
    redis.lpush("queue:x", "{}")
    redis.hset(keys.periodic_state, "tick:last", deep)
    redis.sadd(keys.queues, "hashed")
    redis.hset(keys.queue("hashed"), "a", "b")
    redis.lpush(keys.retry, "x")
    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: {redis_url}\ndata_dir: {tmp_path / 'data'}\n")

    code, out, err = run_ctl(capsys, "status", "-c", str(config))
    assert code == 0 and "Traceback" not in out + err
    assert "deep:1:abc  host=deep" in out and "rss=0.0 MB" in out
    assert "BAD RECORD: info nests JSON deeper than 32 levels; rss is out of a counter" in out
    assert "queue:x  host=queue" in out and "BAD RECORD: its key is not a heartbeat hash" in out
    assert "tick  next=- last=never BAD RECORD: last nests JSON deeper than 32 levels" in out
    assert "hashed  size=0 latency=0.00 s BAD RECORD: its key is not a list (WRONGTYPE" in out
    assert "retries=0" in out
    report = json.loads(run_ctl(capsys, "status", "-c", str(config), "--json")[1])
    assert [bool(p["problem"]) for p in report["processes"]] == [True, True]
def test_reload_sends_hup_to_the_master(capsys, tmp_path):
    # A process named forkq that reports the HUP it got on its standard output.
    code = ("import signal, sys; signal.signal(signal.SIGHUP, lambda *a: print('HUP', flush=True))"
            "; print('ready', flush=True); signal.pause()")
    master = subprocess.Popen([sys.executable, "-c", code, "forkq"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert master.stdout.readline() == "ready\n"
        path = tmp_path / "forkq.pid"
        path.write_text(record_of(master))
        code, out, _ = run_ctl(capsys, "reload", "--pidfile", str(path))
        assert code == 0 and out.startswith(f"forkqctl: sent HUP to forkq master {master.pid}")
        assert master.stdout.readline() == "HUP\n"
    finally:
        master.kill()
        master.wait()


def test_status_into_a_closed_pipe_exits_quietly(tmp_path, redis_url):
    # The reader is gone before status writes (``forkqctl status | head -0``), every time.
    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: {redis_url}\ndata_dir: {tmp_path}\n")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "forkq.ctl", "status", "-c", str(config)],
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=30,
                                env={k: v for k, v in os.environ.items() if k != "REDIS_URL"})
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")


def test_status_counts_coroutine_jobs_apart_from_the_threads():
    now = time.time()
    info = json.dumps({"hostname": "h", "pid": 1, "concurrency": 10, "async_concurrency": 100})

    def line(identity, busy, coroutines):
        fields = [info, busy, str(now), "false", "2048", "0", None, coroutines]
        report = ctl.process_report(parse_process(identity, fields), now)
        return report, ctl.process_line(report)

    report, text = line("h:1:a", "103", "100")
    assert (report["busy"], report["threads_busy"], report["coroutines"],
            report["async_concurrency"]) == (103, 3, 100, 100)
    assert " busy=3/10 coroutines=100/100 rss=" in text
    assert " busy=3/10 rss=" in line("h:2:b", "3", "0")[1]
    report, text = line("h:3:c", "12", None)  # Sidekiq's record: no coroutines field
    assert report["coroutines"] is None and " busy=12/10 rss=" in text
