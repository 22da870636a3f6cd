"""Coroutine jobs: one event loop per worker process runs every ``async def perform``.

Owned by the manager, which builds it with the process's ``Services`` and gives it to the
processors; started at the first coroutine job. Three parts, each with one owner:

- *Hand-over*, in the processor thread that fetched the job: take one of
  ``async_concurrency`` + 2 × ``concurrency`` hand-over slots (``Slots``), record the result
  as running (when kept), and set the job aside as *pending* for that thread. A thread whose
  batch handed jobs over fetches again only once as many slots as threads are free, and then
  no more jobs than there are free slots (``room``): while the loop is full it holds no job
  (the queue keeps them for any process), a full loop wakes one thread once that many jobs
  ended, not once a job, and its next batch is handed over without a wait (with none free
  anyway, another thread having taken them, it waits likewise, after moving what it set
  aside). When the thread's batch ends, before it runs a job of its
  own, and before it waits for a slot, its pending jobs are scheduled on the loop with one
  wake-up and moved out of its private list into the loop's (``forkq:inflight:<slot>:async``;
  in the cluster layout one per queue, in the queue's hash slot with the thread's lists, so
  that the move stays one single-slot call: ``Keys.inflight_async``) with one Lua call
  (``flush``): a round trip and a wake-up a batch, not a job. They start while the move's
  reply is on its way: each job is in the thread's list or the loop's all along, and its end
  is acknowledged only once it moved (``_settle``, ``_ended``). The thread goes on with its
  batch at once: a coroutine waiting on I/O holds no thread, and the thread's next fetch
  (which acknowledges its batch by deleting its private list) no longer holds the job.
  Pending jobs are still the thread's: what it hands back at shutdown or after an error
  includes them (``take_pending``; a job whose move failed may then run twice).
- *The loop thread* starts each job once fewer than ``async_concurrency`` run (publishing it
  to the process's ``WorkState``), runs it through the server middleware (without any, and
  outside a workflow, it awaits the job's own coroutine: ``OutcomeWriter.coroutine``) under
  its time limits (``flow.within_limits``), and frees its slot when it ends. It logs the
  job's ``start`` and ``done`` lines as a processor thread does; each job is its own asyncio
  task, made when it starts (a job waiting for a running slot costs no task step), whose
  copy of ``log.current_job`` gives the lines logged while it runs its context.
- *The finisher thread* does the synchronous writes of finished jobs, in order, through the
  same ``OutcomeWriter`` as the processor threads (``outcome.py``): result record, error
  handlers and retry or dead set, unique lock, metrics; an over-limit job is rescheduled by
  its ``Flow``; then the acknowledgement (``LREM`` from the loop's list, stat counters) of a
  batch in one call per loop list (one, or in the cluster layout one per queue, counting into
  that queue's counters), after which the jobs leave the ``WorkState``; a success with
  nothing to write costs no call but its metrics record, counted once a batch. It also
  watches the loop: a loop that has not turned for ``STALL_SECONDS`` is blocked by a job (a
  blocking call in a coroutine is the job's bug); one warning a stall, naming the job and the
  loop thread's stack.

Server middleware is synchronous: for a coroutine job it runs in the loop thread when the job
starts (``OutcomeWriter.perform_coroutine``); a middleware that must act after the job returns
a coroutine awaiting it. It must not block: it stalls every coroutine job of the process.

Shutdown (``stop(deadline)``): coroutine jobs may run until the deadline; then the unfinished
ones are cancelled (their ``finally`` blocks run), finished ones acknowledged, and the rest
pushed back to the front of their queues before the process exits. A process killed outright
leaves the loop's list to recovery (``recovery.py``), like a thread's.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import os
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from .. import connection
from ..connection.health import retrying
from ..connection.scripts import Script
from ..errors import Cancelled
from ..flow.cancel import among
from ..flow import Flow, placement, within_limits
from ..keys import DAILY_STAT_TTL, STATS_LUA
from ..limiter import OverLimit
from ..log import current_job, job_context, job_extra, job_log, logger, thread_tag
from ..payload import display_class
from .fetch import Fetched, FetchMode, release
from .outcome import unhandled_reason
from .recovery import MOVE_ONE, move_one

#: seconds without a turn of the loop after which a stall is reported
STALL_SECONDS = 0.5
#: seconds between the loop's ticks, which the finisher watches
TICK_SECONDS = 0.1
#: seconds cancelled jobs get to run their ``finally`` blocks at the deadline
CANCEL_GRACE = 2.0
#: most finished jobs acknowledged in one call
ACK_BATCH = 100
#: seconds the finisher lets finished jobs gather before it acknowledges them
ACK_GATHER = 0.005

HAND_OVER_SCRIPT = """
-- Move jobs from a thread's private list to the event loop's. Repeatable: a second call after
-- a lost reply finds the jobs already moved. KEYS: thread's private list, loop's list.
-- ARGV: jobs
for _, job in ipairs(ARGV) do
  if redis.call('LREM', KEYS[1], 1, job) == 1 then redis.call('RPUSH', KEYS[2], job) end
end
return 1
"""

ACK_SCRIPT = STATS_LUA + """
-- Acknowledge finished coroutine jobs and count them. KEYS: loop's list, stat:processed,
-- stat:failed, daily processed, daily failed. ARGV: processed, failed, daily TTL, jobs...
for i = 4, #ARGV do redis.call('LREM', KEYS[1], 1, ARGV[i]) end
count_stats(2, ARGV[1], ARGV[2], ARGV[3])
return 1
"""
HAND_OVER, ACK = Script(HAND_OVER_SCRIPT), Script(ACK_SCRIPT)


#: tags of coroutine jobs in the ``WorkState`` (threads are tagged with their ident)
_tags = itertools.count(int.from_bytes(os.urandom(2), "big") << 8)


@dataclass(eq=False)
class Pending:
    """A processor thread's coroutine jobs not yet moved to the loop, with what moving them
    needs (all from the thread's current batch, so from one private list)."""

    redis: Any
    private_key: str
    #: the loop's list they move to (``CoroutineRunner.list_for`` their queue)
    list_key: str
    attempt: Any
    jobs: list = field(default_factory=list)


@dataclass(frozen=True)
class LoopList:
    """One of the loop's private lists as a postponed job's source (``Flow.postpone``)."""

    private_key: str
    reliable: bool


@dataclass(eq=False)
class Running:
    """A coroutine job handed to the loop; once it starts (it may wait for a running slot
    first), it is published to the process's ``WorkState`` under ``ident``, as a processor
    thread is under its own."""

    fetched: Fetched
    payload: dict[str, Any]
    job_class: type
    keeps_result: bool
    #: the loop's list it moves to (``CoroutineRunner.list_for`` its queue)
    list_key: str
    ident: int = field(default_factory=lambda: next(_tags))
    task: asyncio.Task | None = None
    #: scheduled on the loop (by the ``flush`` that moves it, before the move's reply)
    scheduled: bool = False
    #: out of the thread's private list (or put back by it): its end may be acknowledged
    moved: bool = False
    #: it ended (its ``ending`` is set, or it was cancelled at the stop)
    ended: bool = False
    #: it was cancelled (``forkq.cancel``): however it ends, it ends as cancelled
    cancel_requested: bool = False
    #: it started (a running slot was free) before it ended
    began: bool = False
    #: set by the loop when it ends: (elapsed seconds, value, exception or None)
    ending: tuple[float, Any, BaseException | None] | None = None
    #: what its log lines carry (``log.job_context``)
    context: tuple = field(init=False)

    def __post_init__(self) -> None:
        self.context = job_context(self.payload, self.fetched.queue)


class Slots:
    """The loop's hand-over slots: taken by processor threads, freed by the loop's thread as
    jobs end. A thread that finds none waits until ``refill`` are free, not until the next
    job ends: while the loop is full, one wake-up (and one hand-over round trip) brings it
    several jobs, and the loop's thread wakes a thread once a refill, not once a job."""

    def __init__(self, size: int, refill: int) -> None:
        self.free = size
        self.refill = refill
        self._changed = threading.Condition(threading.Lock())
        self._waiting = 0

    def take(self) -> bool:
        with self._changed:
            if self.free:
                self.free -= 1
                return True
            return False

    def wait(self, timeout: float) -> bool:
        """Take a slot once ``refill`` are free, or any free after ``timeout`` seconds."""
        with self._changed:
            self._wait_for_refill(timeout)
            if not self.free:
                return False
            self.free -= 1
            if self._waiting and self.free >= self.refill:
                self._changed.notify()  # enough left for the next waiter too
            return True

    def room(self, timeout: float) -> int:
        """How many slots are free once ``refill`` are, or after ``timeout`` seconds, taking
        none (``CoroutineRunner.room``)."""
        with self._changed:
            self._wait_for_refill(timeout)
            if self._waiting and self.free >= 2 * self.refill:
                self._changed.notify()  # room for the next waiter's batch too
            return self.free

    def _wait_for_refill(self, timeout: float) -> None:
        # The caller holds ``_changed``; ``give`` wakes one waiter as ``refill`` become free.
        if self.free < self.refill:
            self._waiting += 1
            self._changed.wait(timeout)
            self._waiting -= 1

    def give(self, count: int = 1) -> None:
        with self._changed:
            self.free += count
            if self._waiting and self.free - count < self.refill <= self.free:
                self._changed.notify()


class CoroutineRunner:
    def __init__(self, *, services) -> None:
        self.services = services
        self.outcome = services.outcome
        self.work_state = services.work_state
        #: queue name -> the loop's private list for its jobs (``list_for``)
        self._lists: dict[str, str] = {}
        self.reliable = services.fetch_mode is FetchMode.RELIABLE
        limit = services.config.async_concurrency
        #: coroutine jobs running at once, in the loop, at most; those running (the loop's
        #: thread's), and those handed over waiting to start, in order
        self.limit, self.active = limit, 0
        self.waiting: collections.deque[Running] = collections.deque()
        #: jobs handed over at once: the running ones, plus two waiting per processor thread,
        #: so that a job ending lets the next start within the loop, without a thread's turn;
        #: a thread waits for as many as there are threads (the loop still has as many jobs
        #: waiting to start meanwhile), then fetches and hands over that many in one batch
        threads = services.config.concurrency
        self.slots = Slots(limit + 2 * threads, threads)
        #: guards the meeting of a job's end (loop thread) and its move (processor thread)
        self._handoff = threading.Lock()
        #: jobs handed over and not yet acknowledged (written by hand-over and finisher)
        self.running: dict[int, Running] = {}
        #: processor thread ident -> its jobs set aside, not yet moved (each thread its own)
        self.pending: dict[int, Pending] = {}
        self.finished: queue.SimpleQueue[Running] = queue.SimpleQueue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._start_lock = threading.Lock()
        self._closing = threading.Event()
        #: set by stop() at the deadline: the finisher stops retrying writes while Redis is
        #: away (the manager sets ``services.stopped`` only after stop() returns)
        self._give_up = threading.Event()
        self._last_tick = time.monotonic()
        #: the loop thread's tag in log lines (set when it starts)
        self.tid = ""
        services.cancels.listen(self.cancel_if_running)

    # --- the control watch (``flow/control.py``)

    def cancel_if_running(self, jids: set[str]) -> None:
        """Cancel the task of each job handed over whose jid is in ``jids`` (started or still
        waiting for a running slot); it ends as cancelled (``_record``)."""
        if self.loop is None:
            return
        for job in list(self.running.values()):
            if among(job.payload, jids) and not job.cancel_requested:
                job.cancel_requested = True
                self.loop.call_soon_threadsafe(self._cancel_task, job)

    def _cancel_task(self, job: Running) -> None:
        # A turn later: a task cancelled before its first step never enters _run, whose end
        # frees its slot and writes it as cancelled (its first step is already queued).
        if job.task is not None:
            self.loop.call_soon(job.task.cancel)
        elif job in self.waiting:
            self.waiting.remove(job)
            self._drop_cancelled(job)
        # else not started yet: ``_start_waiting`` drops it

    # --- processor threads

    def room(self, stop) -> int:
        """Before a fetch by a processor thread whose last batch handed jobs over: wait until
        ``refill`` hand-over slots are free (or ``stop()``), and return how many are, the most
        jobs it should fetch. It then hands them over without waiting for a slot, so it holds
        no job while the loop is full, and its batch's pace (``fetch.next_batch``) is that of
        the hand-over, not of the loop."""
        while True:
            free = self.slots.room(TICK_SECONDS)
            if free >= self.slots.refill or stop():
                return max(1, free)

    def hand_over(self, fetched: Fetched, payload: dict[str, Any], job_class, *, redis,
                  private_key: str, attempt, abandoned) -> None:
        """Give a fetched coroutine job to the loop (blocks while every slot is taken), from
        the thread's ``private_key`` list, on its ``redis``, writing through its ``attempt``:
        set aside until the thread's ``flush``.

        Returns without running it when the thread is ``abandoned()`` meanwhile: the job is then
        among what the thread handed to the manager, or already in the loop's list."""
        self._ensure_started()
        ident = threading.get_ident()
        if not self.slots.take():
            self.flush(ident)  # what it set aside frees slots once it runs
            while not self.slots.wait(TICK_SECONDS):
                if abandoned():
                    return
        pending = self.pending.get(ident)
        if pending is None:
            pending = self.pending[ident] = Pending(redis, private_key,
                                                    self.list_for(fetched.origin), attempt)
        job = Running(fetched, payload, job_class, self.outcome.keeps_result(job_class, payload),
                      pending.list_key)
        if job.keeps_result:
            self.outcome.started(redis, payload, attempt)
        if "unique_digest" in payload:
            self.outcome.unlock(redis, payload, "start", attempt)
        pending.jobs.append(job)

    def flush(self, ident: int) -> None:
        """Schedule the jobs thread ``ident`` set aside with one wake-up of the loop, and move
        them to the loop's list in one call; called by that thread.

        They start while the move's reply is on its way (a job is in the thread's list or the
        loop's all along, and the thread fetches again only after the move): its end is
        acknowledged only once it moved (``_settle``). They stay among the thread's pending
        jobs until the move's reply: a manager that abandons the thread meanwhile takes them
        back (``take_pending``) and puts back whichever its release still finds in the
        thread's list, and a move that raises leaves them for the thread to put back."""
        pending = self.pending.get(ident)
        if pending is None:
            return
        jobs = pending.jobs
        fresh = [job for job in jobs if not job.scheduled]
        for job in fresh:
            job.scheduled = True
            self.running[job.ident] = job
        if fresh:
            self.loop.call_soon_threadsafe(self._start, fresh)
        # None: given up at the stop (Redis away); they stay in the thread's list for
        # recovery, and so does their acknowledgement
        if self.reliable:
            pending.attempt(lambda: self._move_in(pending, jobs))
        self.pending.pop(ident, None)
        self._settle(jobs)

    def take_pending(self, ident: int) -> list[Fetched]:
        """The jobs thread ``ident`` set aside and did not move, or whose move is on its way
        (a reliable release puts back only those still in its private list): for the thread,
        or the manager that abandons it, to put back with its unstarted jobs. Those not
        scheduled give back their slots; those scheduled (their move failed or is on its way)
        run on, and may run again."""
        pending = self.pending.pop(ident, None)
        if pending is None:
            return []
        unscheduled = sum(not job.scheduled for job in pending.jobs)
        if unscheduled:
            self.slots.give(unscheduled)
        self._settle([job for job in pending.jobs if job.scheduled])
        return [job.fetched for job in pending.jobs]

    def _settle(self, jobs: list[Running]) -> None:
        """``jobs`` left the thread's list: those that ended already go to the finisher, once
        (a thread and the manager that abandoned it may both settle them)."""
        with self._handoff:
            ended = [job for job in jobs if job.ended and not job.moved]
            for job in jobs:
                job.moved = True
        for job in ended:
            self.finished.put(job)

    def _ended(self, job: Running, finish: bool) -> None:
        """The loop is done with ``job``: its slot frees; when ``finish``, its end goes to the
        finisher once it moved."""
        self.slots.give()
        with self._handoff:
            job.ended = finish
            ready = finish and job.moved
        if ready:
            self.finished.put(job)

    def list_for(self, queue: str) -> str:
        """The loop's private list for jobs fetched from ``queue`` (``Keys.inflight_async``)."""
        key = self._lists.get(queue)
        if key is None:
            key = self._lists[queue] = self.services.keys.inflight_async(self.services.slot,
                                                                          queue)
        return key

    def _move_in(self, pending: Pending, jobs: list[Running]) -> int:
        return connection.run_script(pending.redis, HAND_OVER,
                                     [pending.private_key, pending.list_key],
                     [job.fetched.text for job in jobs])

    # --- the loop thread

    def _start(self, jobs: list[Running]) -> None:
        self.waiting.extend(jobs)
        self._start_waiting()

    def _start_waiting(self) -> None:
        """Start waiting jobs while fewer than ``async_concurrency`` run, each as its own task,
        made only then: a job waiting for a running slot costs no task step."""
        while self.waiting and self.active < self.limit and not self._closing.is_set():
            job = self.waiting.popleft()
            if job.cancel_requested:
                self._drop_cancelled(job)
                continue
            self.active += 1
            job.task = self.loop.create_task(self._run(job))

    def _drop_cancelled(self, job: Running) -> None:
        """End a job cancelled (``forkq.cancel``) before it started."""
        job.ending = (0.0, None, Cancelled(f"cancelled (jid={job.payload.get('jid')})"))
        self._ended(job, True)

    async def _run(self, job: Running) -> None:
        # The task's own copy of the context: the job's lines carry its jid, not another's.
        current_job.set(job.context)
        self.work_state.started(job.ident, job.fetched.queue, job.fetched.text)
        verbose = job_log.enabled
        if verbose:
            job_log.write(self.tid, job.context, "start")
        job.began, started = True, time.perf_counter()
        try:
            payload = job.payload
            awaited = self.outcome.coroutine(job.job_class, payload, job.fetched.queue)
            if "time_limit" in payload or "soft_time_limit" in payload:
                awaited = within_limits(awaited, payload)
            value = await awaited
        except asyncio.CancelledError:
            if self._closing.is_set():
                self._left(job, False)  # stop() pushes it back
                return
            job.ending = (time.perf_counter() - started, None, asyncio.CancelledError(
                "the coroutine job was cancelled"))
        except BaseException as exc:
            job.ending = (time.perf_counter() - started, None, exc)
        else:
            job.ending = (time.perf_counter() - started, value, None)
            if verbose:
                job_log.write(self.tid, job.context, "done", job.ending[0])
        if job.cancel_requested:  # however it ended, even by swallowing the cancellation
            job.ending = (time.perf_counter() - started, None, Cancelled(
                f"cancelled (jid={job.payload.get('jid')})"))
        self._left(job, True)

    def _left(self, job: Running, finish: bool) -> None:
        """A started job's task ends (``_ended``): the next waiting job takes its place."""
        self.active -= 1
        self._ended(job, finish)
        self._start_waiting()

    def _tick(self) -> None:
        self._last_tick = time.monotonic()
        self.loop.call_later(TICK_SECONDS, self._tick)

    # --- the finisher thread

    def _finish_forever(self) -> None:
        services = self.services
        redis = services.make_redis()
        flows: dict[str, Flow] = {}

        def flow_for(list_key: str) -> Flow:
            """The ``Flow`` of the jobs of one loop list (what a postponed job leaves)."""
            if list_key not in flows:
                flows[list_key] = Flow(redis=redis, keys=services.keys,
                                       observer=services.observer, attempt=self._retrying,
                                       source=LoopList(list_key, self.reliable))
            return flows[list_key]

        try:
            while not (self._closing.is_set() and self.finished.empty()):
                batch = self._take_finished()
                if batch:
                    self._finish(redis, flow_for, batch)
                self._watch_stall()
        finally:
            redis.close()

    def _take_finished(self) -> list[Running]:
        try:
            batch = [self.finished.get(timeout=TICK_SECONDS)]
        except queue.Empty:
            return []
        # Let more jobs end first: one wake-up and one round trip acknowledge them all.
        time.sleep(ACK_GATHER)
        while len(batch) < ACK_BATCH and not self.finished.empty():
            batch.append(self.finished.get())
        return batch

    def _finish(self, redis, flow_for, batch: list[Running]) -> None:
        ends, ended = [], []
        for job in batch:
            try:
                ends.append(self._record(redis, flow_for, job, ended))
            except Exception as exc:
                # Not lost with the acknowledgement: the raw job goes to the dead set first.
                ends.append("failed")
                logger.error("could not record the end of coroutine job jid=%s",
                             job.payload.get("jid"), exc_info=exc)
                self.outcome.bury(redis, job.fetched, unhandled_reason(exc), self._retrying)
        if ended:
            self.outcome.finished_many(ended)
        by_list: dict[str, list] = {}
        for job, end in zip(batch, ends):
            by_list.setdefault(job.list_key, []).append((job, end))
        for list_key, done in by_list.items():
            self._retrying(functools.partial(self._acknowledge, redis, list_key, done))
        for job in batch:
            self.running.pop(job.ident, None)
        self.work_state.finished_many([job.ident for job in batch],
                                      len(ends) - ends.count("postponed"))

    def _record(self, redis, flow_for, job: Running, ended: list) -> str:
        """Write what a finished job left (``OutcomeWriter``), or reschedule it when over its
        limiter, adding its metrics record to ``ended`` (``OutcomeWriter.finished_many``);
        returns ``"done"``, ``"failed"``, ``"cancelled"`` or ``"postponed"``. The error and
        death handlers it runs log with the job's context, as in a processor thread."""
        elapsed, _, exc = job.ending
        if exc is None and not self.outcome.writes_at_success(job.payload, job.keeps_result):
            ended.append((job.fetched.queue, job.context[0], elapsed, False))
            return "done"  # nothing to write, nothing to log
        running = current_job.set(job.context)
        try:
            return self._write_end(redis, flow_for, job, ended)
        finally:
            current_job.reset(running)

    def _write_end(self, redis, flow_for, job: Running, ended: list) -> str:
        elapsed, value, exc = job.ending
        payload, queue_name = job.payload, job.fetched.queue
        if isinstance(exc, OverLimit):
            self.outcome.postponed(redis, payload, self._retrying, keeps_result=job.keeps_result)
            flow_for(job.list_key).postpone(job.fetched, payload, exc)
            return "postponed"
        if isinstance(exc, Cancelled):
            self.outcome.cancelled(redis, payload, queue_name, self._retrying, started=job.began)
            return "cancelled"
        if exc is None:
            ack = (job.list_key, job.fetched.text) if self.reliable else ("", "")
            self.outcome.succeeded(redis, payload, value, self._retrying,
                                   keeps_result=job.keeps_result, ack=ack)
        else:
            self.outcome.failed(redis, job.job_class, payload, queue_name, exc,
                                job_extra(job.context, elapsed), self._retrying,
                                keeps_result=job.keeps_result)
        ended.append((queue_name, job.context[0], elapsed, exc is not None))
        return "done" if exc is None else "failed"

    def _acknowledge(self, redis, list_key: str, done: list[tuple[Running, str]]) -> None:
        """Take finished jobs out of ``list_key`` and count them in its queue's counters (all
        its jobs were fetched from queues that count in the same keys)."""
        day = time.strftime("%Y-%m-%d", time.gmtime())
        ends = [end for _, end in done]
        processed, failed = len(ends) - ends.count("postponed"), ends.count("failed")
        texts = [job.fetched.text for job, _ in done] if self.reliable else []
        stat_keys = self.services.keys.queue_stat_keys(done[0][0].fetched.origin, day)
        connection.run_script(redis, ACK, [list_key, *stat_keys],
                              [processed, failed, DAILY_STAT_TTL, *texts])

    def _retrying(self, write) -> Any:
        """Repeat a write while Redis is away, until the shutdown deadline or the process stops
        (what the loop's list holds is then recovered)."""
        return retrying(write, self.services.health,
                        lambda delay: self._give_up.wait(delay) or self.services.stopped.is_set())

    def _watch_stall(self) -> None:
        lag = time.monotonic() - self._last_tick
        if lag < STALL_SECONDS or self._stall_reported == self._last_tick:
            return
        self._stall_reported = self._last_tick
        task = asyncio.current_task(self.loop)
        job = next((j for j in list(self.running.values()) if j.task is task and task), None)
        frame = sys._current_frames().get(self.thread.ident)
        stack = "".join(traceback.format_stack(frame)) if frame else "(no frame)\n"
        what = (f"class={display_class(job.payload)} jid={job.payload.get('jid')}" if job else
                "(no coroutine job: middleware or forkq)")
        logger.warning("event loop stalled for %.1f s by %s: a coroutine job made a blocking "
                       "call (use await, or asyncio.to_thread for blocking code); every "
                       "coroutine job of this process waits meanwhile", lag, what,
                       extra={"details": stack.rstrip()})

    # --- the manager's side

    def _ensure_started(self) -> None:
        if self.loop is not None:
            return
        with self._start_lock:
            if self.loop is not None:
                return
            self._stall_reported = 0.0
            loop = asyncio.new_event_loop()
            self.thread = threading.Thread(target=self._serve, args=(loop,), name="event-loop",
                                           daemon=True)
            self.finisher = threading.Thread(target=self._finish_forever,
                                             name="coroutine-finisher", daemon=True)
            # Published last: a thread that sees the loop finds its threads made.
            self.loop = loop
            self.thread.start()
            self.finisher.start()

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        self.tid = thread_tag()
        loop.call_soon(self._tick)
        loop.run_forever()

    def stop(self, deadline: float) -> int:
        """Let coroutine jobs run until ``deadline`` (monotonic), cancel the rest and push them
        back to the front of their queues; returns how many were pushed back."""
        if self.loop is None:
            return 0
        while self.running and time.monotonic() < deadline:
            time.sleep(TICK_SECONDS / 2)
        self._closing.set()
        self._cancel_all()
        self._give_up.set()
        self.finisher.join(CANCEL_GRACE)
        stuck = self.finisher.is_alive()
        if stuck:
            logger.warning("the coroutine finisher did not end by the shutdown deadline; its "
                           "unacknowledged jobs stay in %s for recovery",
                           ", ".join(list(self._lists.values())))
        # Not acknowledged: cancelled, or ended after the finisher stopped (runs again); those
        # a finisher still running holds are left to it and to recovery.
        unfinished = [job for job in list(self.running.values())
                      if not (stuck and job.ending is not None)]
        requeued = self._requeue(unfinished)
        for job in unfinished:
            self.work_state.finished(job.ident)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(CANCEL_GRACE)
        if unfinished:
            logger.warning("shutdown deadline reached: %d coroutine job(s) cancelled and pushed "
                           "back to their queues", requeued)
        return requeued

    def _cancel_all(self) -> None:
        async def cancel() -> None:
            tasks = [job.task for job in list(self.running.values()) if job.task]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=CANCEL_GRACE)

        try:
            asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(CANCEL_GRACE + 1.0)
        except Exception as exc:  # a job that ignores cancellation: pushed back all the same
            logger.warning("coroutine jobs did not all end when cancelled: %s", exc)

    def _requeue(self, jobs: list[Running]) -> int:
        if not jobs:
            return 0
        redis = self.services.make_redis()
        try:
            keys = self.services.keys
            pushed = 0
            for job in reversed(jobs):
                list_key = job.list_key
                if self.reliable:
                    place = placement.place_of(job.payload, job.fetched.origin)
                    pushed += MOVE_ONE(redis, *move_one(keys, list_key, place,
                                                        job.fetched.text))
                else:  # not in the private list: just put back, at its level
                    pushed += release(redis, keys, list_key, [job.fetched], None, False)
            return pushed
        except Exception as exc:
            logger.error("could not push back %d coroutine job(s) (%s); they stay in %s and "
                         "will be recovered", len(jobs), exc, ", ".join(list(self._lists.values())))
            return 0
        finally:
            redis.close()
