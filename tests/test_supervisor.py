"""The supervisor: pure helpers, then real ``forkq start`` masters with real signals and kills."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys

import psutil
import pytest

import e2e_jobs
from forkq.supervisor import child as child_module, files, notify, pidfile
from forkq import supervisor
from forkq.errors import ForkqError
from forkq.api import Api
from forkq.keys import Keys
from harness import free_port
from helpers import modules_loaded_by, stop_process, wait_for
from masters import Master, gone, inflight_keys, started_by, title

# --- pure helpers

@pytest.mark.parametrize("failures, delay", [(0, 0.0), (1, 0.0), (2, 0.25), (3, 0.5), (4, 1.0),
                                             (7, 8.0), (8, 10.0), (50, 10.0)])
def test_restart_delay_doubles_from_the_second_failure_up_to_the_cap(failures, delay):
    assert supervisor.restart_delay(failures) == delay


def test_max_jobs_is_jittered_within_ten_percent():
    rng = random.Random(7)
    limits = [supervisor.jittered(1000, rng) for _ in range(200)]
    assert all(900 <= limit <= 1100 for limit in limits)
    assert len(set(limits)) > 20
    assert supervisor.jittered(None, rng) is None
    assert supervisor.jittered(1, rng) == 1


@pytest.mark.parametrize("tag, busy, coroutines, stopping, title", [
    ("", 0, 0, False, "forkq {v} [0 of 10 busy]"),
    ("app", 3, 0, False, "forkq {v} app [3 of 10 busy]"),
    ("app", 1, 0, True, "forkq {v} app [1 of 10 busy] stopping"),
    ("app", 3, 100, False, "forkq {v} app [3 of 10 busy, 100 of 100 coroutines]"),
    ("", 0, 7, True, "forkq {v} [0 of 10 busy, 7 of 100 coroutines] stopping"),
])
def test_child_title(tag, busy, coroutines, stopping, title):
    assert (child_module.child_title(tag, busy, 10, coroutines, 100, stopping)
            == title.format(v=_version()))


def _version() -> str:
    import forkq

    return forkq.__version__


def test_a_master_without_periodic_jobs_loads_no_periodic_code():
    """Only the config's ``periodic:`` and ``forkq.register_periodic(...)`` declare periodic
    jobs, and both load ``forkq.periodic``: without them the master leaves it, cronsim and
    zoneinfo out of the memory its children share (``test_periodic_master.py`` runs the
    other cases)."""
    script = ("import forkq.cli, forkq.supervisor as s\n"
              "from forkq.config import Config\n"
              "assert s.periodic_scheduler(Config(), 1) is None")
    assert modules_loaded_by(script, ("forkq.periodic", "cronsim", "zoneinfo")) == []


def test_master_title():
    assert files.master_title("", 2) == "forkq master [2 children]"
    assert files.master_title("app", 4) == "forkq master app [4 children]"


@pytest.mark.parametrize("value, address", [("/run/systemd/notify", "/run/systemd/notify"),
                                            ("@/org/systemd/notify", "\0/org/systemd/notify")])
def test_notify_address_maps_a_leading_at_to_the_abstract_namespace(value, address):
    assert notify.notify_address(value) == address


def test_notify_sends_one_datagram_to_the_abstract_socket(monkeypatch):
    name = f"forkq-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notify.notify("READY=1")
        assert receiver.recv(100) == b"READY=1"


def test_claim_pidfile_refuses_a_running_forkq_process_and_replaces_a_stale_one(tmp_path):
    path = str(tmp_path / "forkq.pid")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "forkq"])
    try:
        with open(path, "w") as handle:
            handle.write(f"{holder.pid}\n")
        with pytest.raises(ForkqError, match="names forkq master"):
            pidfile.claim_pidfile(path)
    finally:
        holder.kill()
        holder.wait()
    pidfile.claim_pidfile(path)
    assert pidfile.read_pidfile(path) == os.getpid()
    pidfile.release_pidfile(path)
    assert not os.path.exists(path)


# --- end to end

@pytest.mark.slow
def test_children_start_process_jobs_and_stop_cleanly(start_master, redis, tmp_path):
    notify_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(notify_path)
        receiver.settimeout(20)
        master = start_master(env={"NOTIFY_SOCKET": notify_path}, tag="e2e",
                              pidfile=str(tmp_path / "forkq.pid"))
        assert receiver.recv(100) == b"READY=1"
        pids = master.ready_pids(2)
        status = master.status()
        assert status["master_pid"] == master.pid and status["tag"] == "e2e"
        assert (status["processes"], status["concurrency"]) == (2, 3)
        assert [c["slot"] for c in status["children"]] == [0, 1]
        assert title(master.pid) == "forkq master e2e [2 children]"
        assert all(psutil.Process(pid).ppid() == master.pid for pid in pids)
        wait_for(lambda: title(pids[0]) == f"forkq {_version()} e2e [0 of 3 busy]", 5,
                 message="child title")
        assert pidfile.read_pidfile(str(tmp_path / "forkq.pid")) == master.pid

        jids = e2e_jobs.Record.perform_bulk([[i] for i in range(50)])
        wait_for(lambda: redis.hlen("e2e:runs") == 50, 10, message="50 jobs run")
        assert set(redis.hkeys("e2e:runs")) == set(jids)

        master.send(signal.SIGTERM)
        assert receiver.recv(100) == b"STOPPING=1"
        assert master.wait_exit(10) == 0
    assert all(gone(pid) for pid in pids)
    assert not os.path.exists(tmp_path / "forkq.pid")
    assert not os.path.exists(os.path.join(master.data_dir, "status.json"))
    assert redis.hlen("forkq:slots") == 0 and inflight_keys(redis) == []


@pytest.mark.slow
def test_with_cpu_affinity_each_child_keeps_to_its_slots_cpu(start_master, redis):
    allowed = sorted(os.sched_getaffinity(0))
    master = start_master(cpu_affinity=True)
    pids = master.ready_pids(2)
    slots = {child["pid"]: child["slot"] for child in master.status()["children"]}
    for pid in pids:
        assert psutil.Process(pid).cpu_affinity() == [allowed[slots[pid] % len(allowed)]]
        assert f"slot {slots[pid]} keeps to CPU {allowed[slots[pid] % len(allowed)]}" \
            in master.log()
    assert len(psutil.Process(master.pid).cpu_affinity()) == len(allowed), "the master's stay"
    jids = e2e_jobs.Record.perform_bulk([[i] for i in range(20)])
    wait_for(lambda: redis.hlen("e2e:runs") == 20, 10, message="20 jobs run")
    assert set(redis.hkeys("e2e:runs")) == set(jids)


@pytest.mark.slow
def test_a_child_killed_mid_job_is_replaced_and_its_job_recovered_at_once(start_master, redis):
    # A long heartbeat TTL: only the replacement's boot recovery can bring the job back in time.
    master = start_master(processes=1, heartbeat_ttl=60)
    old = master.ready_pids(1)[0]
    jid = e2e_jobs.Sleep.perform_async(0.5)
    wait_for(lambda: started_by(redis, jid) == old, 10, message="job started")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: redis.hget("e2e:runs", jid) == "1", 10, message="job run again")
    new = master.ready_pids(1)[0]
    assert new != old and started_by(redis, jid) == new
    assert master.child(0)["restarts"] == 1
    assert "recovered 1 job(s) left by this slot's previous process" in master.log()
    assert master.proc.poll() is None


@pytest.mark.slow
def test_a_job_that_kills_its_process_runs_again_in_the_replacement(start_master, redis):
    master = start_master(processes=1, heartbeat_ttl=60)
    first = master.ready_pids(1)[0]
    jid = e2e_jobs.CrashOnce.perform_async()
    wait_for(lambda: redis.hget("e2e:runs", jid) == "1", 15, message="job run again")
    assert started_by(redis, jid) != first
    assert "killed by SIGKILL" in master.log()


@pytest.mark.slow
def test_children_of_a_killed_master_requeue_and_exit_then_a_new_master_runs_the_jobs(
        start_master, redis):
    master = start_master(timeout=1)
    pids = master.ready_pids(2)
    jids = e2e_jobs.Sleep.perform_bulk([[3], [3]])
    wait_for(lambda: redis.hlen("e2e:started") == 2, 10, message="jobs started")
    master.proc.kill()
    master.proc.wait()
    wait_for(lambda: all(gone(pid) for pid in pids), 10, message="children exit")
    assert redis.llen("queue:default") == 2 and inflight_keys(redis) == []

    start_master(timeout=1).ready_pids(2)
    wait_for(lambda: redis.hlen("e2e:runs") == 2, 15, message="jobs run by the new master")
    assert set(redis.hkeys("e2e:runs")) == set(jids)


@pytest.mark.slow
def test_term_requeues_jobs_longer_than_the_timeout_and_exits_0(start_master, redis):
    master = start_master(timeout=1)
    master.ready_pids(2)
    e2e_jobs.Sleep.perform_bulk([[30]] * 4)
    wait_for(lambda: redis.hlen("e2e:started") == 4, 10, message="jobs started")
    master.send(signal.SIGTERM)
    assert master.wait_exit(1 + supervisor.GRACE) == 0
    assert redis.llen("queue:default") == 4 and inflight_keys(redis) == []
    assert redis.hlen("e2e:runs") == 0


@pytest.mark.slow
def test_a_second_int_stops_at_once_and_still_requeues_the_running_jobs(start_master, redis):
    master = start_master(timeout=30)
    master.ready_pids(2)
    jids = e2e_jobs.Sleep.perform_bulk([[60]] * 3)
    wait_for(lambda: redis.hlen("e2e:started") == 3, 10, message="jobs started")
    master.send(signal.SIGINT)
    wait_for(lambda: "INT: stopping; running jobs have 30 s to finish" in master.log(), 5,
             message="the first INT logged")
    assert "TERM or INT (Ctrl-C) again stops at once" in master.log()
    master.send(signal.SIGINT)
    assert master.wait_exit(10) == 0
    assert "INT again: stopping at once: SIGKILL to every child" in master.log()
    assert sorted(json.loads(text)["jid"] for text in redis.lrange("queue:default", 0, -1)) == \
        sorted(jids)
    assert inflight_keys(redis) == [] and redis.hlen("e2e:runs") == 0


@pytest.mark.slow
def test_a_child_that_ignores_term_is_killed_after_the_grace_and_the_master_requeues(
        start_master, redis):
    master = start_master(processes=1, timeout=1)
    pid = master.ready_pids(1)[0]
    jid = e2e_jobs.Sleep.perform_async(30)
    wait_for(lambda: started_by(redis, jid) == pid, 10, message="job started")
    stop_process(pid)
    master.send(signal.SIGTERM)
    assert master.wait_exit(1 + supervisor.GRACE + 3) == 0
    assert gone(pid)
    assert [json.loads(text)["jid"] for text in redis.lrange("queue:default", 0, -1)] == [jid]
    assert inflight_keys(redis) == []
    assert "pushed 1 job(s) left by killed children" in master.log()


@pytest.mark.slow
def test_tstp_quiets_every_child(start_master, redis):
    master = start_master()
    master.ready_pids(2)
    api = Api(redis, Keys())
    wait_for(lambda: len(api.processes()) == 2, 5, message="two heartbeats")
    master.send(signal.SIGTSTP)
    wait_for(lambda: all(p.quiet for p in api.processes()), 5, message="quiet heartbeats")
    jid = e2e_jobs.Sleep.perform_async(0)
    beats = {p.identity: p.beat for p in api.processes()}
    wait_for(lambda: all(p.beat > beats[p.identity] for p in api.processes()), 5,
             message="a later heartbeat")
    assert not redis.hexists("e2e:started", jid)
    # A thread blocked on the queue may take the job, but gives it back without starting it.
    wait_for(lambda: redis.llen("queue:default") == 1, 5, message="the job left in its queue")
    assert not redis.hexists("e2e:started", jid)


@pytest.mark.slow
def test_usr2_reopens_every_log_file_and_ttin_dumps_the_threads(start_master, redis):
    master = start_master()
    pids = master.ready_pids(2)
    master.send(signal.SIGTTIN)
    wait_for(lambda: master.log().count("thread heartbeat") == 2, 5, message="stack dumps")
    os.rename(master.logfile, master.logfile + ".1")
    master.send(signal.SIGUSR2)

    def new_lines_from_every_child():
        e2e_jobs.Record.perform_bulk([[i] for i in range(20)])
        if not os.path.exists(master.logfile):
            return False
        return all(f"pid={pid} " in master.log() for pid in pids)
    wait_for(new_lines_from_every_child, 10, interval=0.2, message="children log to the new file")
    master.send(signal.SIGTERM)
    assert master.wait_exit(10) == 0
    assert f"pid={master.pid} " in master.log()
    assert "master stopped" in master.log()


@pytest.mark.slow
def test_children_failing_at_start_stop_the_master_instead_of_fork_looping(start_master):
    # Every child exits at once after the fork (the master itself is fine: Redis answers it).
    failing = "import os\nos.register_at_fork(after_in_child=lambda: os._exit(1))\n"
    master = start_master(require=["e2e_jobs", "e2e_fork_fails"],
                          modules={"e2e_fork_fails": failing})
    assert master.wait_exit(30) == 1
    assert "forkq: children exited with status 1 before becoming ready 5 times in a row" in \
        master.stderr()


@pytest.mark.slow
def test_an_import_error_in_require_stops_the_master_before_any_fork(start_master):
    master = start_master(require=["e2e_jobs", "e2e_broken"],
                          modules={"e2e_broken": "raise RuntimeError('broken at import')\n"})
    assert master.wait_exit(15) == 1
    assert master.stderr().strip().splitlines() == [
        "forkq: require: could not import 'e2e_broken': e2e_broken.py:1: RuntimeError: broken at "
        "import"]
    assert "forked child" not in master.log()


@pytest.mark.slow
def test_a_child_over_max_memory_is_stopped_gracefully_and_replaced(start_master, redis):
    master = start_master(processes=1, max_memory_mb=120)
    old = master.ready_pids(1)[0]
    jid = e2e_jobs.Allocate.perform_async(150)
    wait_for(lambda: redis.hget("e2e:runs", jid) == "1", 10, message="allocation done")
    wait_for(lambda: master.child(0)["restarts"] == 1 and master.child(0)["ready"], 15,
             message="replacement ready")
    assert master.child(0)["pid"] != old and gone(old)
    assert "over max_memory_mb 120" in master.log()
    assert f"child {old} (slot 0) exited with status 0" in master.log()


@pytest.mark.slow
def test_a_child_reaching_max_jobs_recycles_itself(start_master, redis):
    master = start_master(processes=1, max_jobs=10)
    old = master.ready_pids(1)[0]
    e2e_jobs.Record.perform_bulk([[i] for i in range(30)])
    wait_for(lambda: redis.hlen("e2e:runs") == 30, 20, message="jobs run")
    wait_for(lambda: master.child(0)["restarts"] >= 1, 10, message="a recycled child")
    assert "(max_jobs): stopping to be replaced" in master.log()
    assert gone(old)


@pytest.mark.slow
def test_a_child_whose_loop_stops_reporting_is_killed_and_replaced(start_master, redis):
    master = start_master(processes=1, liveness_timeout=1.5)
    old = master.ready_pids(1)[0]
    stop_process(old)
    wait_for(lambda: master.child(0)["pid"] not in (old, None) and master.child(0)["ready"], 10,
             message="a replacement")
    assert gone(old)
    assert "has not reported for" in master.log()


@pytest.mark.slow
def test_hup_replaces_children_one_at_a_time_with_the_new_config(start_master, redis):
    master = start_master(concurrency=2)
    old = set(master.ready_pids(2))
    master.write_config(concurrency=4)
    master.send(signal.SIGHUP)
    most_down = 0

    def all_replaced():
        nonlocal most_down
        children = master.status()["children"]
        most_down = max(most_down, sum(1 for c in children if not c["ready"]))
        pids = {c["pid"] for c in children if c["ready"]}
        return len(pids) == 2 and not pids & old
    wait_for(all_replaced, 20, interval=0.01, message="both children replaced")
    assert most_down == 1
    api = Api(redis, Keys())
    wait_for(lambda: sorted(p.concurrency for p in api.processes() if p.pid not in old) == [4, 4],
             5, message="heartbeats of the new children")


def scrape(port: int) -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def exporter_pid(master: Master) -> int | None:
    for child in psutil.Process(master.pid).children():
        try:
            if title(child.pid).startswith("forkq metrics"):
                return child.pid
        except psutil.Error:
            pass  # a child that exited and is not reaped yet
    return None


@pytest.mark.slow
def test_the_metrics_exporter_is_supervised_and_counts_the_childrens_jobs(start_master, redis):
    port = free_port()
    master = start_master(metrics={"bind": "127.0.0.1", "port": port})
    master.ready_pids(2)
    e2e_jobs.Record.perform_bulk([[i] for i in range(5)])
    counted = 'forkq_jobs_processed_total{class="e2e_jobs.Record",queue="default"} 5.0'
    wait_for(lambda: counted in (scrape(port) or ""), 10, interval=0.1, message="5 jobs counted")
    first = exporter_pid(master)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: exporter_pid(master) not in (None, first) and scrape(port), 10,
             message="a new exporter serving")
    second = exporter_pid(master)
    master.send(signal.SIGTERM)
    assert master.wait_exit(10) == 0
    assert gone(second)


@pytest.mark.slow
def test_chaos_every_job_runs_at_least_once_despite_kill_9(start_master, redis):
    master = start_master(processes=2, concurrency=5, heartbeat_ttl=60)
    master.ready_pids(2)
    jids = e2e_jobs.Sleep.perform_bulk([[0.01]] * 2000)
    rng = random.Random()
    kills = 0
    while redis.hlen("e2e:runs") < 2000 and kills < 8:
        pids = master.ready_pids(2, timeout=20)
        wait_for(lambda: redis.hlen("e2e:runs") > 150 * (kills + 1) or
                 redis.hlen("e2e:runs") == 2000, 20, message="progress between kills")
        victim = rng.choice(pids)
        os.kill(victim, signal.SIGKILL)
        kills += 1
        wait_for(lambda: victim not in [c["pid"] for c in master.status()["children"]], 10,
                 message="the killed child reaped")
    wait_for(lambda: redis.hlen("e2e:runs") == 2000, 60, interval=0.1, message="every job run")
    runs = redis.hgetall("e2e:runs")
    assert set(runs) == set(jids)
    twice = sum(1 for count in runs.values() if int(count) > 1)
    print(f"chaos: {kills} kill -9, {len(jids)} jobs, {twice} ran more than once")
    assert kills >= 4
    assert master.proc.poll() is None


@pytest.mark.slow
def test_an_app_that_enqueues_at_import_leaves_no_redis_socket_in_the_master(start_master, redis):
    module = "import e2e_jobs\ne2e_jobs.Record.perform_async('at import')\n"
    master = start_master(require=["e2e_jobs", "e2e_enqueues"], modules={"e2e_enqueues": module})
    master.ready_pids(2)
    wait_for(lambda: redis.hlen("e2e:runs") == 1, 10, message="the job enqueued at import ran")
    streams = [c for c in psutil.Process(master.pid).net_connections(kind="unix")
               if c.type == socket.SOCK_STREAM]
    assert streams == []


RETIRING_JOB = """
import gc

import forkq
from forkq.supervisor.child import ChildTick


class RetireMe(forkq.Job):
    def perform(self):
        tick = next(o for o in gc.get_objects() if isinstance(o, ChildTick))
        tick.request_retirement()
"""


def test_a_child_that_asks_to_be_retired_is_replaced_gracefully(start_master, redis):
    master = start_master(processes=1, require=["e2e_jobs", "retire"],
                          modules={"retire": RETIRING_JOB})
    (first,) = master.ready_pids(1)
    redis.lpush("queue:default", json.dumps({"class": "retire.RetireMe", "args": [],
                                             "jid": "r" * 24, "queue": "default"}))
    def replacement():
        return next((c["pid"] for c in (master.status() or {"children": []})["children"]
                     if c["ready"] and c["pid"] not in (None, first)), None)
    wait_for(replacement, 15, message="a ready replacement child")
    wait_for(lambda: gone(first), 5, message="the retired child gone")
    # The master reaps the child before it logs the exit, so the line may trail the reap.
    wait_for(lambda: f"child {first} (slot 0) exited with status 0" in master.log(), 5,
             message="the retired child's exit logged")
    assert f"child {first} (slot 0) asked to be replaced: stopping it gracefully" in master.log()


@pytest.mark.slow
def test_an_unreachable_redis_stops_the_master_before_any_fork_in_one_line(start_master):
    master = start_master(redis_url="redis://:s3cret@127.0.0.1:1/0", logfile=None)
    assert master.wait_exit(20) == 1
    [line] = master.stderr().splitlines()
    assert line.startswith("forkq: Redis at redis://:***@127.0.0.1:1/0 does not answer: ")
    assert line.endswith("(check redis_url or REDIS_URL, and that the server runs); no worker "
                         "was started")


@pytest.mark.slow
def test_the_master_holds_no_redis_connection_once_it_has_checked(start_master):
    master = start_master()
    master.ready_pids()
    # No socket at all: the check's connection was closed before the first fork.
    assert psutil.Process(master.pid).net_connections("all") == []
