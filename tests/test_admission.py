"""The gate before each processor's fetch (``adaptive_concurrency``): how many threads of a
worker take work at once, on real threads; the process's clock and CPU time are given, so a
test says what the process did in each window."""

import threading

import pytest

import jobs
from forkq.worker.admission import (BUSY, HOLD, SEVERAL, SPARE, STALLED, WINDOW, WORSE,
                                    Admission)
from helpers import wait_for


class Process:
    """The clock and CPU seconds an ``Admission`` reads, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.used = 0.0

    def window(self, cpus: float) -> None:
        """One ``WINDOW`` passes, ``cpus`` of a CPU busy."""
        self.now += WINDOW
        self.used += WINDOW * cpus


@pytest.fixture
def process():
    return Process()


def gate(process, most=10, adaptive=True):
    return Admission(most, adaptive, clock=lambda: process.now, cpu=lambda: process.used)


def turn(admission, jobs_taken):
    assert admission.enter(lambda: False)
    admission.leave(jobs_taken)


def window(admission, process, cpus, jobs_a_second):
    """A window in which the process kept ``cpus`` busy and ran ``jobs_a_second``."""
    process.window(cpus)
    turn(admission, int(jobs_a_second * WINDOW))


def waiter(admission, stopping=lambda: False):
    """A thread that enters (and stays inside); ``.entered`` once it did."""
    entered = threading.Event()
    result = []

    def run():
        result.append(admission.enter(stopping))
        entered.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.entered, thread.result = entered, result
    return thread


def test_a_process_bound_by_its_interpreter_halves_its_limit_while_jobs_go_faster(process):
    admission = gate(process)
    for limit, rate in [(5, 1000), (2, 1500), (1, 1600)]:
        window(admission, process, BUSY + 0.05, rate)
        assert admission.limit == limit
    window(admission, process, BUSY + 0.05, 1700)
    assert admission.limit == 1


def test_a_trial_that_runs_fewer_jobs_puts_the_limit_back_and_holds_it(process):
    admission = gate(process)
    window(admission, process, 1.0, 1000)
    assert admission.limit == 5
    window(admission, process, 1.0, 1000 * (1 - WORSE) - 50)  # threads were helping
    assert admission.limit == 10
    for _ in range(HOLD - 1):
        window(admission, process, 1.0, 1000)
        assert admission.limit == 10, "no new trial while held"
    window(admission, process, 1.0, 1000)
    assert admission.limit == 5


def test_a_process_on_several_cpus_at_once_keeps_its_threads(process):
    """Jobs running code outside the interpreter lock (NumPy, compression) on several CPUs."""
    admission = gate(process)
    for _ in range(3):
        window(admission, process, SEVERAL + 0.25, 1000)
    assert admission.limit == 10


def test_threads_waiting_on_io_get_the_limit_back_while_others_stand_outside(process):
    admission = gate(process, most=4)
    window(admission, process, 1.0, 1000)
    window(admission, process, 1.0, 1100)
    assert admission.limit == 1
    inside = waiter(admission)
    assert inside.entered.wait(5)
    outside = waiter(admission)
    assert wait_for(lambda: admission.waiting == 1)
    assert not outside.entered.is_set()
    process.window(SPARE / 2)
    admission.leave(1)  # the thread inside ends a turn: the window shows CPU to spare
    assert admission.limit == 2
    assert outside.entered.wait(5), "the waiting thread was let in when the limit grew"


def test_a_thread_inside_past_stalled_does_not_keep_the_others_out(process):
    admission = gate(process)
    for _ in range(4):
        window(admission, process, 1.0, 1000 * (_ + 1))
    assert admission.limit == 1
    long_job = waiter(admission)
    assert long_job.entered.wait(5)
    other = waiter(admission)
    assert wait_for(lambda: admission.waiting == 1)
    assert not other.entered.wait(2 * STALLED), "one fresh thread inside: the limit holds"
    process.now += STALLED * 1.5  # the first one's job runs on, or its fetch waits for work
    assert other.entered.wait(5)


def test_a_waiting_thread_is_let_go_when_the_worker_stops(process):
    admission = gate(process)
    for _ in range(4):
        window(admission, process, 1.0, 1000 * (_ + 1))
    assert waiter(admission).entered.wait(5)
    stop = threading.Event()
    outside = waiter(admission, stop.is_set)
    assert wait_for(lambda: admission.waiting == 1)
    stop.set()
    assert outside.entered.wait(5)
    assert outside.result == [False]


def test_without_adaptive_concurrency_every_thread_is_admitted(process):
    admission = gate(process, adaptive=False)
    for _ in range(5):
        window(admission, process, 1.0, 1000 * (_ + 1))
    assert admission.limit == 10
    threads = [waiter(admission) for _ in range(12)]
    assert all(thread.entered.wait(5) for thread in threads)


def test_a_worker_at_a_limit_of_one_still_runs_jobs_that_wait_all_at_once(
        redis, start_worker):
    """From a limit of 1 (where a CPU-bound stretch leaves it), jobs that then wait all run at
    once: a thread inside past ``STALLED`` (waiting for work, or for its job) lets the next
    in."""

    def limit_to_one(worker):
        worker.manager.admission.limit = 1

    start_worker(before_start=limit_to_one, concurrency=4)
    jobs.gate.clear()
    try:
        for value in range(4):
            jobs.wait_for_gate.perform_async(value)
        assert wait_for(lambda: redis.llen("started") == 4), redis.lrange("started", 0, -1)
    finally:
        jobs.gate.set()
    assert wait_for(lambda: redis.llen("ran") == 4)
