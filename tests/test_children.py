"""The master's children as objects, and the slot policy: real forked processes, real signals,
no master loop."""

from __future__ import annotations

import os
import signal
import time

import pytest

from forkq import config as forkq_config
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


def test_slots_due_are_the_wanted_ones_without_a_child_past_their_backoff():
    slots = children.Slots("host:9")
    first, second = slots.due(2, 100.0)
    assert (first.name, second.name) == ("host:9:0", "host:9:1")
    first.pid, second.respawn_at = 4242, 101.0  # a child runs in slot 0; slot 1 backs off
    assert slots.due(2, 100.0) == []
    assert slots.due(2, 101.0) == [second]
    assert slots.due(1, 101.0) == [], "a slot beyond 'processes' is not forked"
    assert slots.names() == ["host:9:0", "host:9:1"]


def test_early_exits_in_a_row_are_a_crash_loop_and_a_ready_child_ends_the_run():
    slots = children.Slots("host:9")
    (slot,) = slots.due(1, 0.0)
    assert [slots.crash_loop(slot, 1) for _ in range(children.CRASH_LIMIT - 1)] == \
        [False] * (children.CRASH_LIMIT - 1)
    assert not slots.crash_loop(slot, 0) and not slots.crash_loop(slot, -signal.SIGKILL), \
        "a clean exit or a kill is no early failure"
    slot.ready = True
    assert not slots.crash_loop(slot, 1), "a child that became ready did not fail at start"
    slot.ready = False
    assert slots.crash_loop(slot, 1)

    slots.early_exits = 3
    slot.fork_worker(Forker, report_and_wait, timeout=1.0, generation=0)
    try:
        wait_for(lambda: all_ready(slots, 1), 5, message="ready")
        assert slots.early_exits == 0
    finally:
        slot.kill()
        slot.exited(wait_exit(slot.pid), time.monotonic())


def report_and_wait(pipe: int) -> None:
    os.write(pipe, b".")
    time.sleep(60)
    os._exit(0)


def all_ready(slots: children.Slots, processes: int) -> bool:
    list(slots.read_reports(time.monotonic()))
    return slots.all_ready(processes)


def test_slots_replace_children_of_an_old_config_one_at_a_time_once_all_are_ready():
    config = forkq_config.from_mapping({"processes": 2}, "test")
    slots = children.Slots("host:9")
    for slot in slots.due(2, time.monotonic()):
        slot.fork_worker(Forker, report_and_wait, timeout=5.0, generation=0)
    try:
        wait_for(lambda: all_ready(slots, 2), 5, message="both ready")
        slots.replace_unwanted(config, generation=1, quiet=True)
        assert not any(slot.retiring for slot in slots), "a quiet master replaces nothing"
        slots.replace_unwanted(config, generation=1, quiet=False)
        retiring = [slot for slot in slots if slot.retiring]
        assert len(retiring) == 1 and retiring[0].kill_at is not None
        slots.replace_unwanted(config, generation=1, quiet=False)
        assert [slot for slot in slots if slot.retiring] == retiring, "one at a time"
        retiring[0].exited(wait_exit(retiring[0].pid), time.monotonic())
        slots.replace_unwanted(config, generation=1, quiet=False)
        assert not any(slot.retiring for slot in slots), "not until every wanted child is up"
    finally:
        for slot in slots.live():
            slot.kill()
            slot.exited(wait_exit(slot.pid), time.monotonic())
