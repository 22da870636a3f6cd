"""Jobs' own log lines in a real ``forkq start``: their context, both formats, coroutine jobs,
and where an import of a ``require:`` module failed."""

from __future__ import annotations

import json
import logging
import os
import re

import pytest

from forkq import worker
from forkq.errors import ConfigError
from helpers import LogLines, wait_for

CHATTY_MODULE = """
import asyncio
import logging

import forkq
from forkq import Job

logger = logging.getLogger(__name__)
forkq.error_handlers.append(lambda exc, context: logger.error("reported: %s", exc))
#: coroutine jobs started in this process and not yet past their wait
waiting = set()


class Chatty(Job):
    def perform(self, word):
        logger.info("info from the job: %s", word)
        logger.warning("warning from the job: %s", word)


class Failing(Job):
    def perform(self):
        raise ValueError("the job failed")


class Overlapping(Job):
    '''Logs before and after a wait that ends once ``count`` of them run at once, so that each
    one's lines are written while the others run on the same event loop.'''
    async def perform(self, word, count):
        logger.info("before %s", word)
        waiting.add(word)
        for _ in range(1000):
            if len(waiting) >= count:
                break
            await asyncio.sleep(0.01)
        logger.info("after %s", word)


class FailingCoroutine(Job):
    async def perform(self):
        raise ValueError("the coroutine failed")
"""

RECORD_START = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z pid=\d+ tid=\w+ ")


def push(redis, job_class: str, args: list, jid: str) -> None:
    redis.sadd("queues", "default")
    redis.lpush("queue:default", json.dumps({"class": f"e2e_chatty.{job_class}", "args": args,
                                             "jid": jid, "queue": "default", "retry": False}))


def start(start_master, **settings):
    master = start_master(processes=1, require=["e2e_chatty"],
                          modules={"e2e_chatty": CHATTY_MODULE}, **settings)
    master.ready_pids(1)
    return master


@pytest.mark.slow
def test_a_jobs_info_and_warning_lines_reach_the_logfile_with_its_context(start_master, redis):
    master = start(start_master)
    push(redis, "Chatty", ["hello"], "a" * 24)
    wait_for(lambda: "warning from the job" in master.log(), 10, message="the job's lines")

    lines = master.log().splitlines()
    context = "class=e2e_chatty.Chatty jid=" + "a" * 24
    for level, word in (("INFO", "info"), ("WARNING", "warning")):
        line = next(line for line in lines if f"{word} from the job" in line)
        assert RECORD_START.match(line), line
        assert line.endswith(f" {context} {level}: {word} from the job: hello"), line
    assert "from the job" not in master.stderr()


@pytest.mark.slow
def test_forkqs_lines_survive_an_application_that_disables_existing_loggers(start_master,
                                                                            redis):
    master = start_master(processes=1, require=["e2e_chatty", "e2e_logging_config"], modules={
        "e2e_chatty": CHATTY_MODULE,
        "e2e_logging_config": "import logging.config\n"
                              "logging.config.dictConfig({'version': 1})\n"})
    master.ready_pids(1)
    push(redis, "Chatty", ["hello"], "d" * 24)
    wait_for(lambda: " INFO: done" in master.log(), 10, message="the job's done line")
    text = master.log()
    assert "master started" in text and "disabled the 'forkq' logger" in text
    assert "jid=" + "d" * 24 + " INFO: start" in text


@pytest.mark.slow
def test_json_lines_parse_one_by_one_with_the_jobs_fields(start_master, redis):
    master = start(start_master, log_format="json")
    push(redis, "Chatty", ["hello"], "b" * 24)
    push(redis, "Failing", [], "c" * 24)
    wait_for(lambda: "the job failed" in master.log(), 10, message="both jobs ran")

    records = [json.loads(line) for line in master.log().splitlines()]
    assert all({"time", "level", "pid", "tid", "logger", "message"} <= set(record)
               for record in records)
    job = {"class": "e2e_chatty.Chatty", "jid": "b" * 24, "queue": "default"}
    mine = [record for record in records if record.get("jid") == "b" * 24]
    assert [(r["logger"], r["level"], r["message"]) for r in mine] == [
        ("forkq", "INFO", "start"),
        ("e2e_chatty", "INFO", "info from the job: hello"),
        ("e2e_chatty", "WARNING", "warning from the job: hello"),
        ("forkq", "INFO", "done")]
    assert all(record.items() >= job.items() for record in mine)
    assert isinstance(mine[-1]["elapsed"], float)
    failed = next(record for record in records if record["message"].startswith("fail:"))
    assert failed["jid"] == "c" * 24 and failed["level"] == "WARNING"
    reported = next(record for record in records if record["message"].startswith("reported:"))
    assert reported["jid"] == "c" * 24 and reported["logger"] == "e2e_chatty"  # error handler
    assert failed["exception"].startswith("Traceback") and \
        failed["exception"].endswith("ValueError: the job failed")
    assert any(record["message"].startswith("forkq ") and "master started" in
               record["message"] for record in records)


@pytest.mark.slow
def test_a_coroutine_jobs_lines_carry_its_own_jid_while_others_run(start_master, redis):
    master = start(start_master)
    words = [f"w{index}" for index in range(4)]
    for index, word in enumerate(words):
        push(redis, "Overlapping", [word, len(words)], f"{index:024x}")
    push(redis, "FailingCoroutine", [], "f" * 24)
    wait_for(lambda: master.log().count(" INFO: after w") == len(words) and
             "WARNING: fail: ValueError: the coroutine failed" in master.log(), 15,
             message="every coroutine job's last line, the failure's (after its handler's)")

    lines = master.log().splitlines()
    before = [index for index, line in enumerate(lines) if " INFO: before w" in line]
    after = [index for index, line in enumerate(lines) if " INFO: after w" in line]
    assert max(before) < min(after)  # every job wrote its first line before any its last
    for index, word in enumerate(words):
        context = f"class=e2e_chatty.Overlapping jid={index:024x} "
        mine = [line.split(context, 1)[1] for line in lines if context in line]
        assert mine[0] == "INFO: start" and re.fullmatch(r"elapsed=[\d.]+ INFO: done", mine[-1])
        assert [line for line in mine if "INFO: before" in line or "INFO: after" in line] == \
            [f"INFO: before {word}", f"INFO: after {word}"]
    # The error handler runs in the finisher thread, still with the job's context.
    failing = [line.split(" jid=" + "f" * 24 + " ", 1)[1] for line in lines
               if RECORD_START.match(line) and " jid=" + "f" * 24 + " " in line]
    assert failing[:2] == ["INFO: start", "ERROR: reported: the coroutine failed"]
    assert re.match(r"elapsed=[\d.]+ WARNING: fail: ValueError: the coroutine failed; ",
                    failing[2]) and len(failing) == 3


def test_an_import_error_names_the_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = {"bad_name": "import os\n\nx = undefined_name\n",
               "bad_syntax": "def f(:\n    pass\n",
               "bad_inside_library": "import json\n\njson.loads('{')\n",
               "bad_dependency": "import no_such_dependency_here\n"}
    for name, text in modules.items():
        (tmp_path / f"{name}.py").write_text(text)
    messages = {}
    with LogLines() as logged:
        logging.getLogger("forkq").setLevel(logging.DEBUG)
        try:
            for name in [*modules, "no_such_module_here"]:
                with pytest.raises(ConfigError) as raised:
                    worker.import_required([name])
                messages[name] = str(raised.value)
        finally:
            logging.getLogger("forkq").setLevel(logging.NOTSET)
    prefix = "require: could not import "
    assert messages["bad_name"] == (
        f"{prefix}'bad_name': bad_name.py:3: NameError: name 'undefined_name' is not defined")
    assert messages["bad_syntax"] == f"{prefix}'bad_syntax': bad_syntax.py:1: SyntaxError: " \
        "invalid syntax"
    json_file = os.path.relpath(json.decoder.__file__)
    assert re.fullmatch(
        rf"{prefix}'bad_inside_library': bad_inside_library\.py:3 \(raised in "
        rf"{re.escape(os.path.abspath(json_file) if json_file.startswith('..') else json_file)}"
        rf":\d+\): JSONDecodeError: .*", messages["bad_inside_library"])
    assert messages["bad_dependency"] == f"{prefix}'bad_dependency': bad_dependency.py:1: " \
        "ModuleNotFoundError: No module named 'no_such_dependency_here'"
    assert messages["no_such_module_here"] == f"{prefix}'no_such_module_here': " \
        "ModuleNotFoundError: No module named 'no_such_module_here' (modules are found from " \
        f"the working directory {tmp_path}, which forkq puts on sys.path: run forkq from your " \
        "project's root, or set PYTHONPATH)"
    assert logged.count("require: importing 'bad_name' failed") == 1
