"""The gate before each processor's fetch (``adaptive_concurrency``): how many threads of a
worker take work at once, on real threads; the process's clock and CPU time are given, so a
test says what the process did in each window."""

import logging
import os
import threading

import pytest

import jobs
from forkq.worker.admission import (BUSY, HOLD, LONGEST_WINDOW, MARGIN, PIN_HOLD, SETTLED,
                                    SEVERAL, SPARE, STALLED, TRIAL_WINDOWS, WINDOW, WINDOW_JOBS,
                                    Admission)
from forkq.worker.affinity import TASKS, Affinity, current_cpu, move_threads
from helpers import wait_for


class Process:
    """The clock and CPU seconds an ``Admission`` reads, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.used = 0.0

    def window(self, cpus: float) -> None:
        """One ``WINDOW`` passes (a hair more, against rounding), ``cpus`` of a CPU busy."""
        self.now += WINDOW * 1.001
        self.used += WINDOW * 1.001 * cpus


#: windows from a change on trial to its verdict (the first is left out): when the first
#: window measured clears the rate that keeps it by the margin, either way, and when not
DECIDED = 2
JUDGED = 1 + TRIAL_WINDOWS


@pytest.fixture
def process():
    return Process()


def gate(process, most=10, adaptive=True, affinity=None):
    return Admission(most, adaptive, affinity=affinity, clock=lambda: process.now,
                     cpu=lambda: process.used)


def turn(admission, jobs_taken):
    """A turn's end, as a thread's that took ``jobs_taken`` jobs (its start is no measure)."""
    admission.leave(jobs_taken)


def window(admission, process, cpus, jobs_a_second):
    """A window in which the process kept ``cpus`` busy and ran ``jobs_a_second``."""
    process.window(cpus)
    jobs_taken = round(jobs_a_second * WINDOW)
    assert jobs_taken >= WINDOW_JOBS, "a window the gate would not judge yet"
    turn(admission, jobs_taken)


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


def run(admission, process, cpus, rate_at, windows):
    """``windows`` windows, each running ``rate_at(limit)`` jobs a second at the limit then;
    the limits seen, in turn."""
    seen = [admission.limit]
    for _ in range(windows):
        window(admission, process, cpus, rate_at(admission.limit))
        if admission.limit != seen[-1]:
            seen.append(admission.limit)
    return seen


def to_one(admission, process):
    """Windows of a process bound by its interpreter, each lower limit running more jobs,
    until the limit is 1."""
    seen = run(admission, process, 1.0, lambda limit: 20000 - 500 * limit, 30)
    assert seen[-1] == 1 and admission.trial is None, seen


def test_a_process_bound_by_its_interpreter_halves_its_limit_while_jobs_go_faster(process):
    admission = gate(process)
    rates = {10: 10000, 5: 14000, 2: 17000, 1: 17500}
    assert run(admission, process, BUSY + 0.05, rates.get, 20) == [10, 5, 2, 1]


def test_no_trial_is_made_while_a_burst_is_starting(process):
    """The first windows of a burst run fewer jobs while its threads start: against them,
    fewer threads would look no slower."""
    admission = gate(process)
    for rate in (2000, 5000, 12000, 25000):
        window(admission, process, 1.0, rate)
    assert admission.limit == 10
    window(admission, process, 1.0, 26000)
    assert admission.limit == 5, "two steady windows: fewer threads on trial"


def test_a_trial_that_runs_fewer_jobs_puts_the_limit_back_and_holds_it(process):
    admission = gate(process)
    rates = {10: 10000, 5: 10000 * (1 - MARGIN) - 200}  # threads were helping
    assert run(admission, process, 1.0, rates.get, 8) == [10, 5, 10]
    assert 0 < admission.hold < HOLD
    while admission.hold > 1:
        window(admission, process, 1.0, 10000)
        assert admission.limit == 10, "no new trial while held"
    assert run(admission, process, 1.0, rates.get, 1) == [10, 5]


def test_a_lower_limit_is_judged_on_the_mean_of_its_windows_when_one_does_not_decide(
        process):
    """Jobs taking turns on a database lock: windows scatter, and the lower limit runs as
    many jobs a second on average, at less CPU a job."""
    admission = gate(process)
    for rate in (10400, 9600, 10400):
        window(admission, process, 1.0, rate)
    assert admission.limit == 5, "on trial"
    window(admission, process, 1.0, 20000)  # left out: threads above 5 end their turns
    window(admission, process, 1.0, 9400)  # below the best before by more than the margin
    assert admission.trial is not None, "within the margin of the mean: not decided yet"
    window(admission, process, 1.0, 10400)
    assert admission.trial is None and admission.limit == 5


def test_a_process_on_several_cpus_at_once_keeps_its_threads(process):
    """Jobs running code outside the interpreter lock (NumPy, compression) on several CPUs."""
    admission = gate(process)
    assert run(admission, process, SEVERAL + 0.25, lambda limit: 10000, 10) == [10]


def at_one_with_a_thread_outside(process):
    """A gate whose limit came down to 1, one thread inside and one waiting outside."""
    admission = gate(process, most=4)
    to_one(admission, process)
    inside, outside = waiter(admission), waiter(admission)
    assert inside.entered.wait(5) and wait_for(lambda: admission.waiting == 1)
    return admission, outside


@pytest.mark.parametrize("gain, kept", [(MARGIN + 0.02, True), (MARGIN - 0.02, False)])
def test_more_threads_are_kept_only_when_they_run_more_jobs(process, gain, kept):
    admission, outside = at_one_with_a_thread_outside(process)
    between = (SPARE + BUSY) / 2  # CPU to spare, but not idle: more threads may or may not help
    rates = {1: 19500, 2: 19500 * (1 + gain)}  # at 1 as in ``to_one``
    assert run(admission, process, between, rates.get, 1) == [1, 2]
    assert outside.entered.wait(5), "let in at once"
    seen = run(admission, process, between, rates.get, JUDGED)
    assert admission.trial is None
    assert seen == ([2] if kept else [2, 1])
    assert bool(admission.hold) is not kept


def test_jobs_that_turn_to_several_cpus_get_their_threads_back_on_trial(process):
    """After a stretch bound by Python, short jobs running outside the interpreter lock."""
    admission, outside = at_one_with_a_thread_outside(process)
    rates = {1: 20000, 2: 40000}
    assert run(admission, process, SEVERAL + 0.25, rates.get, 1) == [1, 2]
    assert outside.entered.wait(5)
    assert run(admission, process, SEVERAL + 0.25, rates.get, DECIDED) == [2]
    assert admission.trial is None


def test_threads_waiting_on_io_get_the_limit_back_while_others_stand_outside(process):
    admission = gate(process, most=4)
    to_one(admission, process)
    inside = waiter(admission)
    assert inside.entered.wait(5)
    outside = waiter(admission)
    assert wait_for(lambda: admission.waiting == 1)
    assert not outside.entered.is_set()
    process.window(SPARE / 2)
    admission.leave(1)
    assert admission.limit == 1, "one job is too few to judge a window by"
    process.now += LONGEST_WINDOW
    admission.leave(1)  # a window as long as they get, with CPU to spare: no trial needed
    assert admission.limit == 2 and admission.trial is None
    assert outside.entered.wait(5), "the waiting thread was let in when the limit grew"


def test_a_thread_inside_past_stalled_does_not_keep_the_others_out(process):
    admission = gate(process)
    to_one(admission, process)
    long_job = waiter(admission)
    assert long_job.entered.wait(5)
    other = waiter(admission)
    assert wait_for(lambda: admission.waiting == 1)
    assert not other.entered.wait(2 * STALLED), "one fresh thread inside: the limit holds"
    process.now += STALLED * 1.5  # the first one's job runs on, or its fetch waits for work
    assert other.entered.wait(5)


def test_a_waiting_thread_is_let_go_when_the_worker_stops(process):
    admission = gate(process)
    to_one(admission, process)
    assert waiter(admission).entered.wait(5)
    stop = threading.Event()
    outside = waiter(admission, stop.is_set)
    assert wait_for(lambda: admission.waiting == 1)
    stop.set()
    assert outside.entered.wait(5)
    assert outside.result == [False]


def test_without_adaptive_concurrency_every_thread_is_admitted(process):
    admission = gate(process, adaptive=False)
    for _ in range(8):
        window(admission, process, 1.0, 10000 * (_ + 1))
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


# --- the threads' CPU mask (cpu_affinity: auto), set for real on this test process's threads


@pytest.fixture
def cpus():
    """The CPUs this process may use, put back on every thread after the test."""
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("one CPU: nothing to keep the threads to")
    yield allowed
    move_threads(allowed)


@pytest.fixture
def parked_threads():
    """Three threads that wait, started before the test: the process's other threads."""
    release = threading.Event()
    threads = [threading.Thread(target=release.wait, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    yield threads
    release.set()


def masks() -> set:
    """The distinct CPU masks of this process's threads."""
    found = set()
    for name in os.listdir(TASKS):
        try:
            found.add(frozenset(os.sched_getaffinity(int(name))))
        except OSError:
            pass  # ended since the listing
    return found


def pinned_run(admission, process, cpus_busy, rate_at, windows):
    """``windows`` windows, each running ``rate_at(cpu kept to or None, limit)`` jobs a
    second; the CPU masks (None: any CPU) seen, in turn."""
    seen = [admission.affinity.cpu]
    for _ in range(windows):
        window(admission, process, cpus_busy, rate_at(admission.affinity.cpu, admission.limit))
        if admission.affinity.cpu != seen[-1]:
            seen.append(admission.affinity.cpu)
    return seen


def faster_on_one_cpu(cpu, limit):
    return 10000 if cpu is None else 16000


def test_current_cpu_is_the_cpu_the_thread_runs_on(cpus):
    for cpu in sorted(cpus):
        os.sched_setaffinity(0, {cpu})
        assert current_cpu() == cpu


def test_a_process_bound_by_python_keeps_its_threads_to_one_cpu_when_jobs_go_faster(
        process, cpus, parked_threads):
    admission = gate(process, affinity=Affinity())
    seen = pinned_run(admission, process, 1.0, faster_on_one_cpu, SETTLED + DECIDED)
    cpu = admission.affinity.cpu
    assert seen == [None, cpu] and cpu in cpus, "kept to one CPU before any lower limit"
    assert admission.trial is None and admission.limit == 10
    assert masks() == {frozenset({cpu})}, "every thread of the process"
    later = threading.Thread(target=lambda: None)
    later.start()
    assert masks() == {frozenset({cpu})}, "a thread started later inherits the mask"
    later.join()
    pinned_run(admission, process, 1.0, faster_on_one_cpu, 6)
    assert admission.limit < 10, "then lower limits are tried, as before"


def test_one_cpu_that_does_not_make_jobs_faster_is_let_go_then_fewer_threads_are_tried(
        process, cpus):
    """Jobs taking turns on a database lock: one CPU gains nothing, fewer threads cost less
    CPU a job at the same speed."""
    admission = gate(process, affinity=Affinity())
    seen = pinned_run(admission, process, 1.0, lambda cpu, limit: 10000, SETTLED + JUDGED)
    assert seen[0] is None and seen[-1] is None and len(seen) == 3, seen
    assert masks() == {frozenset(cpus)}
    assert admission.pin_wait and not admission.hold, "the mask waits, the limit does not"
    assert pinned_run(admission, process, 1.0, lambda cpu, limit: 10000,
                      SETTLED + DECIDED) == [None]
    assert admission.limit == 5 and admission.trial is None, "as fast: the lower limit kept"


def kept_to_one_cpu(process, cpus):
    admission = gate(process, affinity=Affinity())
    pinned_run(admission, process, 1.0, faster_on_one_cpu, SETTLED + DECIDED)
    assert admission.affinity.cpu is not None and admission.trial is None
    return admission


def test_threads_kept_to_one_cpu_are_let_go_when_it_is_no_longer_busy(
        process, cpus, parked_threads):
    """Its jobs now wait on something else, or another process shares the CPU."""
    admission = kept_to_one_cpu(process, cpus)
    between = (SPARE + BUSY) / 2
    assert pinned_run(admission, process, between, lambda cpu, limit: 9000, 4)[-1] is None
    assert admission.trial is None, "not slower: stays let go"
    assert masks() == {frozenset(cpus)}


def test_an_idle_spell_leaves_the_threads_where_they_are(process, cpus):
    """Windows of a few jobs (fetches that wait for work) say nothing of the CPU."""
    admission = kept_to_one_cpu(process, cpus)
    cpu = admission.affinity.cpu
    for _ in range(PIN_HOLD + 10):
        process.now += LONGEST_WINDOW
        process.used += LONGEST_WINDOW * SPARE / 10
        admission.leave(1)
    assert admission.affinity.cpu == cpu and masks() == {frozenset({cpu})}


def test_threads_kept_to_one_cpu_are_let_go_on_trial_every_so_often(process, cpus):
    """Jobs that turned to running outside the interpreter lock cannot show it on one CPU."""
    admission = kept_to_one_cpu(process, cpus)
    cpu = admission.affinity.cpu
    numpy_like = {None: 30000, cpu: 16000}
    seen = pinned_run(admission, process, 1.0, lambda kept, limit: numpy_like[kept],
                      PIN_HOLD + 10)
    assert seen == [cpu, None] and admission.trial is None
    assert masks() == {frozenset(cpus)}


def test_cpu_affinity_false_leaves_the_threads_on_any_cpu(process, cpus):
    admission = gate(process)
    run(admission, process, 1.0, lambda limit: 20000 - 500 * limit, 20)
    assert admission.affinity is None and masks() == {frozenset(cpus)}


def test_a_mask_linux_refuses_is_named_and_no_mask_is_tried_again(process, cpus, caplog):
    """A cpuset that changed under the process: the CPUs to go back to are no longer allowed."""
    admission = kept_to_one_cpu(process, cpus)
    admission.affinity.allowed = frozenset({max(cpus) + 4096})  # no such CPU
    with caplog.at_level(logging.WARNING, logger="forkq"):
        for _ in range(4):
            window(admission, process, (SPARE + BUSY) / 2, 9000)
    assert admission.affinity is None
    assert [record.getMessage() for record in caplog.records] == [
        "cpu_affinity: auto: the worker's threads stay on the CPUs they have, since Linux "
        "refused a change of them ([Errno 22] Invalid argument)"]
    run(admission, process, 1.0, lambda limit: 20000 - 500 * limit, 10)  # limits, as before


@pytest.mark.parametrize("setting, tried", [("auto", True), (False, False), (True, False)])
def test_a_worker_tries_cpu_masks_only_with_cpu_affinity_auto(start_worker, cpus, setting,
                                                              tried):
    """``true`` is the supervisor's: each child kept to its slot's CPU from its start."""
    worker = start_worker(cpu_affinity=setting)
    assert (worker.manager.admission.affinity is not None) is tried
