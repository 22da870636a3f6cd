"""The master's children as objects: real forked processes, real signals, no master loop."""

from __future__ import annotations

import os
import signal
import time

import pytest

from forkq.supervisor import children
from helpers import wait_for


class Forker:
    """What a child needs of the supervisor: a fork that drops nothing (no master state here)."""

    @staticmethod
    def fork() -> int:
        return os.fork()


def wait_exit(pid: int, timeout: float = 10.0) -> int:
    result = {}

    def exited():
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            result["code"] = os.waitstatus_to_exitcode(status)
        return done
    wait_for(exited, timeout, message=f"pid {pid} to exit")
    return result["code"]


def test_a_helper_that_ignores_term_is_overdue_after_grace_and_killed(monkeypatch):
    monkeypatch.setattr(children, "GRACE", 0.2)
    ready_read, ready_write = os.pipe()

    def ignore_term() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.write(ready_write, b"!")
        time.sleep(60)
        os._exit(0)

    helper = children.Helper("test helper", ignore_term)
    helper.fork(Forker)
    os.read(ready_read, 1)
    os.close(ready_read)
    os.close(ready_write)
    helper.stop(time.monotonic() + 60)  # no jobs: the deadline does not extend GRACE
    assert not helper.overdue(time.monotonic())
    wait_for(lambda: helper.overdue(time.monotonic()), 2, message="overdue")
    helper.kill()
    code = wait_exit(helper.pid)
    assert code == -signal.SIGKILL
    helper.exited(code, time.monotonic())
    assert not helper.alive and helper.failures == 1 and helper.respawn_at <= time.monotonic()


@pytest.mark.parametrize("code, failures, respawns", [(0, 0, False), (3, 1, True)])
def test_a_helper_is_restarted_after_a_crash_never_after_a_clean_exit(code, failures, respawns):
    helper = children.Helper("test helper", lambda: os._exit(code))
    helper.fork(Forker)
    helper.exited(wait_exit(helper.pid), time.monotonic())
    assert helper.failures == failures
    assert (helper.respawn_at != float("inf")) is respawns


def test_a_worker_slot_reports_ready_stopping_and_asks_to_be_retired():
    slot = children.WorkerSlot(0, "host:1:0")

    def main(pipe: int) -> None:
        os.write(pipe, b".")
        os.read(go_read, 1)
        os.write(pipe, b"R")
        os.read(go_read, 1)
        os._exit(0)

    go_read, go_write = os.pipe()
    slot.fork_worker(Forker, main, timeout=2.0, generation=3)
    try:
        assert (slot.generation, slot.timeout, slot.ready) == (3, 2.0, False)
        assert wait_for(lambda: slot.read_report(time.monotonic()), 5, message="ready")
        assert slot.ready and not slot.wants_retirement
        os.write(go_write, b"x")
        wait_for(lambda: slot.read_report(time.monotonic()) or slot.wants_retirement, 5,
                 message="the retirement request")
        slot.retire("asked to be replaced", time.monotonic() + slot.timeout)
        assert slot.retiring and slot.kill_at is not None
        os.write(go_write, b"x")
        code = wait_exit(slot.pid)
    finally:
        os.close(go_read)
        os.close(go_write)
    slot.exited(code, time.monotonic())
    assert (slot.pipe, slot.ready, slot.retiring, slot.failures) == (None, False, False, 0)
    assert slot.respawn_at <= time.monotonic(), "a retired child is replaced at once"
