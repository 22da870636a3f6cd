"""Log lines: one record a line, whatever a payload holds; tracebacks as marked continuations."""

from __future__ import annotations

import json
import logging
import os
import re

import pytest

from forkq import log
from helpers import LogLines, wait_for

#: a class name, queue name or error message as an attacker would write it
NASTY = "a\nb\rc\x1b[31md\x00e\u2028f\u202eg\ud800h"
ESCAPED = r"a\nb\rc\x1b[31md\x00e\u2028f\u202eg\ud800h"
#: what may not reach a log file or a terminal raw
RAW = ("\r", "\x1b", "\x00", "\u2028", "\u202e")
HOSTILE_MODULE = """
from forkq import Job


class Fail(Job):
    def perform(self, message):
        raise ValueError(message)
"""
RECORD_START = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z pid=\d+ tid=")


@pytest.mark.parametrize("text, escaped", [
    ("plain text, café, 日本", "plain text, café, 日本"),
    ("tab\there", r"tab\there"),
    (NASTY, ESCAPED),
    ("\x7f\x85\u200b\U000e0001", r"\x7f\x85\u200b\U000e0001"),
])
def test_escape_controls(text, escaped):
    assert log.escape_controls(text) == escaped


@pytest.fixture
def logfile(tmp_path):
    """forkq's logging to a file; the previous set-up (forkq's and the root logger's) is
    restored afterwards."""
    logger, root, state = log.logger, logging.getLogger(), dict(log._state)
    saved = [(each, list(each.handlers), each.level, each.propagate) for each in (logger, root)]
    job_log = dict(vars(log.job_log))
    path = tmp_path / "forkq.log"
    yield path
    if log._state["output"] is not None:
        log._state["output"].close()
    for each, handlers, level, propagate in saved:
        for handler in list(each.handlers):
            each.removeHandler(handler)
        for handler in handlers:
            each.addHandler(handler)
        each.setLevel(level)
        each.propagate = propagate
    vars(log.job_log).update(job_log)
    log._state.update(state)


def traceback_lines(exc: BaseException) -> int:
    text = logging.Formatter().formatException((type(exc), exc, exc.__traceback__))
    return len(text.rstrip("\n").split("\n"))


@pytest.mark.parametrize("buffered", [False, True])
def test_control_characters_cannot_forge_lines(logfile, buffered):
    log.setup("INFO", str(logfile), buffered=buffered)
    log.logger.info("queues=%s", NASTY, extra=log.job_extra((NASTY, "1", "q")))
    try:
        raise ValueError(NASTY)
    except ValueError as exc:
        error = exc
        log.logger.warning("fail: %s: %s", "ValueError", exc, exc_info=exc,
                           extra=log.job_extra((NASTY, "2", "q")))
    log.job_log.write("t1", (NASTY, "3", "q"), "done", 0.001)
    log.logger.warning("thread %s:", NASTY, extra={"details": f"  File x\n    {NASTY}\n"})
    log.flush()

    text = logfile.read_bytes().decode()
    assert not any(char in text for char in RAW)
    lines = text.splitlines()
    # The details' and the traceback's own newlines (NASTY's included) become continuations.
    assert len(lines) == 4 + traceback_lines(error) + 3, text
    records = [line for line in lines if RECORD_START.match(line)]
    assert [line.split(" INFO: ")[-1].split(" WARNING: ")[-1] for line in records] == [
        f"queues={ESCAPED}", f"fail: ValueError: {ESCAPED}", "done", f"thread {ESCAPED}:"]
    assert all(f"class={ESCAPED} jid=" in line for line in records[:3])
    continuations = [line for line in lines if not RECORD_START.match(line)]
    assert continuations[-3:] == [log.BLOCK_PREFIX + line for line in
                                  ("  File x", "    a", ESCAPED.partition(r"\n")[2])]
    assert len(continuations) == traceback_lines(error) + 3
    assert all(line.startswith(log.BLOCK_PREFIX) for line in continuations)


@pytest.mark.slow
def test_a_worker_logs_hostile_payloads_one_record_a_line(start_master, redis):
    master = start_master(processes=1, require=["e2e_jobs", "e2e_hostile"],
                          modules={"e2e_hostile": HOSTILE_MODULE})
    master.ready_pids(1)
    forged = "\n1999-01-01T00:00:00.000Z pid=1 tid=1 INFO: forged"
    bad_class = {"class": f"Evil{forged}\r\x1b[31m\x00\u2028", "args": [],
                 "jid": "a" * 24, "queue": f"default{forged}\x1b[2J", "retry": False}
    bad_jid = {"class": "e2e_jobs.Record", "args": [], "jid": f"\x1b[31m{forged}\u2028",
               "queue": "default", "retry": False}
    fail = {"class": "e2e_hostile.Fail", "args": [f"boom{forged}\x1b[2J\x00\u2028"],
            "jid": "b" * 24, "queue": "default", "retry": False}
    for payload in (bad_class, bad_jid, fail):
        redis.lpush("queue:default", json.dumps(payload))
    wait_for(lambda: redis.hlen("e2e:runs") == 1 and
             master.log().count(" WARNING: fail: ") == 2, 10, message="three jobs done")
    wait_for(lambda: redis.hget("e2e:runs", bad_jid["jid"]), 5, message="the hostile jid ran")

    text = master.log()
    assert not any(char in text for char in RAW)
    for line in text.splitlines():
        assert RECORD_START.match(line) or line.startswith(log.BLOCK_PREFIX), line
    assert r"\n1999-01-01T00:00:00.000Z pid=1 tid=1 INFO: forged" in text
    assert len([line for line in text.splitlines() if "forged" in line and
                RECORD_START.match(line)]) >= 5  # start and fail of two jobs, two of Record


def test_timestamps_keep_their_millisecond_across_the_cache():
    assert [log.timestamp(t) for t in (1764392400.0004, 1764392400.0009, 1764392400.9995,
                                       1764392401.0001, 1764392400.0004)] == [
        "2025-11-29T05:00:00.000Z", "2025-11-29T05:00:00.000Z", "2025-11-29T05:00:00.999Z",
        "2025-11-29T05:00:01.000Z", "2025-11-29T05:00:00.000Z"]


def test_two_threads_flushing_at_once_write_every_line_once(tmp_path):
    import sys
    import threading

    output = log.Output(str(tmp_path / "lines.log"))
    buffer = log.LineBuffer(output)
    errors: list = []

    def flush(start):
        start.wait()
        try:
            buffer.flush()
        except Exception as exc:  # reported below
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for round_ in range(100):
            for index in range(2000):
                buffer.put(f"{round_}-{index}\n")
            start = threading.Barrier(2)
            flushers = [threading.Thread(target=flush, args=(start,)) for _ in range(2)]
            for thread in flushers:
                thread.start()
            for thread in flushers:
                thread.join(10)
    finally:
        sys.setswitchinterval(interval)
    output.close()
    written = (tmp_path / "lines.log").read_text().splitlines()
    assert errors == [] and len(written) == 200000 and len(set(written)) == 200000


@pytest.mark.parametrize("buffered", [False, True])
def test_threads_log_without_queueing_on_the_handlers_lock(logfile, buffered):
    """A worker's threads log (a Django task's framework lines, two a task) without taking
    the handler's lock, on which they would queue behind the GIL: lines from many threads get
    written, whole and once each, while another thread holds that lock."""
    import sys
    import threading

    log.setup("INFO", str(logfile), buffered=buffered)
    handler, held, release = log._state["handler"], threading.Event(), threading.Event()

    def hold() -> None:
        with handler.lock:
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    writers = [threading.Thread(target=lambda n=n: [log.logger.info("line %d-%d", n, index)
                                                    for index in range(500)])
               for n in range(8)]
    try:
        for thread in writers:
            thread.start()
        wait_for(lambda: not any(thread.is_alive() for thread in writers), timeout=10,
                 message="the writers, while another thread holds the handler's lock")
    finally:
        sys.setswitchinterval(interval)
        release.set()
        holder.join(10)
        for thread in writers:
            thread.join(10)
    log.flush()
    written = [line for line in logfile.read_text().splitlines() if " INFO: line " in line]
    assert all(RECORD_START.match(line) for line in written)
    messages = [line.split(" INFO: ")[1] for line in written]
    assert len(messages) == 4000 and len(set(messages)) == 4000


@pytest.mark.parametrize("buffered", [False, True])
def test_json_lines_escape_what_payloads_hold_and_parse_back(logfile, buffered):
    log.setup("INFO", str(logfile), buffered=buffered, log_format="json")
    context = (NASTY, f"jid{NASTY}", f"queue{NASTY}")
    log.logger.info("queues=%s", NASTY, extra=log.job_extra(context))
    try:
        raise ValueError(NASTY)
    except ValueError as exc:
        log.logger.warning("fail: %s", exc, exc_info=exc, extra=log.job_extra(context, 0.25))
    log.job_log.write("t1", context, "done", 0.001)
    log.logger.warning("thread %s:", NASTY, extra={"details": f"  File x\n    {NASTY}\n"})
    log.flush()

    text = logfile.read_bytes().decode()
    assert text.isascii() and not any(char in text for char in RAW)
    records = [json.loads(line) for line in text.splitlines()]
    assert [record["message"] for record in records] == [
        f"queues={NASTY}", f"fail: {NASTY}", "done", f"thread {NASTY}:"]
    job = {"class": NASTY, "jid": f"jid{NASTY}", "queue": f"queue{NASTY}"}
    assert all(record.items() >= job.items() for record in records[:3])
    assert "class" not in records[3] and records[3]["details"] == f"  File x\n    {NASTY}\n"
    assert [record.get("elapsed") for record in records] == [None, 0.25, 0.001, None]
    assert records[1]["exception"].endswith(f"ValueError: {NASTY}")
    assert [(r["level"], r["logger"], r["pid"]) for r in records] == [
        ("INFO", "forkq", os.getpid()), ("WARNING", "forkq", os.getpid()),
        ("INFO", "forkq", os.getpid()), ("WARNING", "forkq", os.getpid())]
    assert records[2]["tid"] == "t1" and records[0]["tid"] == log.thread_tag()
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
               for record in records)


def test_forkq_owns_the_root_logger_unless_the_application_keeps_it(logfile):
    root, app = logging.getLogger(), logging.getLogger("app.jobs")
    with LogLines("") as seen_by_the_application:
        log.setup("INFO", str(logfile), root="application")
        app.warning("kept by the application")
        log.logger.info("a line of forkq's")
        assert seen_by_the_application == ["kept by the application"]
        log.setup("INFO", str(logfile), root="forkq")
        token = log.current_job.set(("app.jobs.Report", "j1", "default"))
        try:
            app.info("an info line of the job")
        finally:
            log.current_job.reset(token)
        app.debug("below the level")
        assert seen_by_the_application == ["kept by the application"]
        assert root.level == logging.INFO
        # A config re-read that hands the root logger back takes forkq's handler off it.
        log.setup("INFO", str(logfile), root="application")
        assert log._state["handler"] not in root.handlers
        app.warning("the application's again")
    lines = logfile.read_text().splitlines()
    assert [line.split(" INFO: ", 1)[1] for line in lines] == [
        "a line of forkq's", "an info line of the job"]
    assert " class=app.jobs.Report jid=j1 INFO: an info line" in lines[1]


def test_the_running_jobs_context_follows_its_thread_and_its_task(logfile):
    import asyncio
    import threading

    log.setup("INFO", str(logfile))
    app = logging.getLogger("app.jobs")
    in_job, logged = threading.Event(), threading.Event()

    def job_thread():
        log.current_job.set(("app.Slow", "thread-job", "default"))
        in_job.set()
        logged.wait(5)
        app.info("from the job's thread")

    async def coroutine_job(jid: str, peers: asyncio.Barrier):
        log.current_job.set(("app.Async", jid, "default"))
        app.info("before %s", jid)
        await peers.wait()  # the other coroutine sets its own job meanwhile
        app.info("after %s", jid)

    async def two_jobs():
        peers = asyncio.Barrier(2)
        await asyncio.gather(coroutine_job("c1", peers), coroutine_job("c2", peers))

    thread = threading.Thread(target=job_thread)
    thread.start()
    in_job.wait(5)
    app.info("from another thread")
    logged.set()
    thread.join(5)
    asyncio.run(two_jobs())
    lines = [line.split(" pid=", 1)[1] for line in logfile.read_text().splitlines()]
    texts = [line.split(" ", 2)[2] for line in lines]
    assert texts[:4] == [
        "INFO: from another thread", "class=app.Slow jid=thread-job INFO: from the job's thread",
        "class=app.Async jid=c1 INFO: before c1", "class=app.Async jid=c2 INFO: before c2"]
    assert sorted(texts[4:]) == [
        "class=app.Async jid=c1 INFO: after c1", "class=app.Async jid=c2 INFO: after c2"]


def test_the_filter_gives_an_applications_handlers_the_jobs_fields():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    handler.addFilter(log.JobContextFilter())
    app = logging.getLogger("app.filtered")
    app.addHandler(handler)
    app.propagate = False
    try:
        app.warning("outside")
        token = log.current_job.set(("app.Report", "j9", "low"))
        app.warning("inside")
        log.current_job.reset(token)
    finally:
        app.removeHandler(handler)
        app.propagate = True
    formatter = logging.Formatter("%(job_class)s|%(jid)s|%(queue)s|%(message)s")
    assert [formatter.format(record) for record in records] == [
        "|||outside", "app.Report|j9|low|inside"]


def test_the_documented_configuration_for_log_root_application_runs(logfile, capsys):
    import sys

    text = open(os.path.join(os.path.dirname(__file__), "..", "docs", "observability.md")).read()
    block = next(code for code in re.findall(r"```python\n(.*?)```", text, re.S)
                 if "JobContextFilter" in code)
    disabled = {name: each.disabled for name, each in logging.root.manager.loggerDict.items()
                if isinstance(each, logging.Logger)}
    log.setup("INFO", str(logfile), root="application")
    exec(compile(block, "docs/observability.md", "exec"), {})
    console = logging.getLogger().handlers[-1]
    console.setStream(sys.stdout)
    token = log.current_job.set(("shop.ChargeOrder", "j7", "default"))
    logging.getLogger("shop").info("charging order 42")
    log.current_job.reset(token)
    log.logger.info("still forkq's")
    assert capsys.readouterr().out.endswith(" INFO shop.ChargeOrder j7 charging order 42\n")
    assert logfile.read_text().endswith(" INFO: still forkq's\n")
    assert all(not logging.getLogger(name).disabled for name, was in disabled.items()
               if not was)


def test_forkqs_logger_stays_enabled_when_the_application_disables_existing_loggers(logfile):
    log.setup("INFO", str(logfile))
    # What logging.config.dictConfig does to every logger that exists, unless told otherwise.
    log.logger.disabled = True
    log.reclaim()
    log.logger.info("still written")
    log.logger.disabled = True
    log.setup("INFO", str(logfile))  # a forked child inherits the flag
    log.logger.info("written by the child")
    log.reclaim()
    lines = logfile.read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "the application's logging configuration disabled the 'forkq' logger (dictConfig's "
        "disable_existing_loggers is true unless set to false); forkq's lines are written all "
        "the same", "still written", "written by the child"]
