"""The ``forkq`` command: flags over the config, one-line errors, the worker and web commands."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

import e2e_jobs
import forkq
from forkq import cli, config
from forkq.errors import ForkqError
from helpers import wait_for
from masters import ROOT, TESTS


def own_env() -> dict:
    """This environment without a Redis URL or forkq settings of its own, forkq importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "FORKQ_"))}
    env["PYTHONPATH"] = ROOT
    return env


def run_forkq(*args: str, cwd: str, timeout: float = 20) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, TESTS])
    return subprocess.run([sys.executable, "-m", "forkq.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("config_text, message", [
    ("processes: 2\nconcurency: 4\n", "unknown key 'concurency' (did you mean 'concurrency'?)"),
    ("processes: zero\n", "key 'processes' has invalid value 'zero'"),
    (None, "config file not found"),
])
def test_a_config_error_is_one_line_and_exit_1(tmp_path, config_text, message):
    path = tmp_path / "forkq.yml"
    if config_text is not None:
        path.write_text(config_text)
    result = run_forkq("start", "-c", str(path), cwd=str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"forkq: {path}") and message in lines[0]


@pytest.mark.parametrize("module, args, content, prefix, message", [
    ("forkq.cli", ["start", "-c", "{dir}"], None, "forkq", "{dir}: is a directory"),
    ("forkq.cli", ["web", "-c", "{file}", "--bind", "0.0.0.0:abc"], "tag: x\n", "forkq",
     "command line: --bind '0.0.0.0:abc': expected an integer from 0 to 65535"),
    ("forkq.cli", ["web", "-c", "{file}"], "web: {port: 99999}\n", "forkq",
     "{file}: key 'web' has invalid value {'port': 99999}: port: expected an integer"),
    ("forkq.cli", ["worker", "-c", "{file}"], "poll_interval: .nan\n", "forkq",
     "{file}: key 'poll_interval' has invalid value nan"),
    ("forkq.worker", ["-c", "{file}"], b"tag: \xff\n", "forkq", "{file}: not UTF-8 text"),
    ("forkq.ctl", ["status", "-c", "{file}"], "redis_url: ftp://x/\n", "forkqctl",
     "{file}: key 'redis_url' has invalid value 'ftp://x/'"),
    ("forkq.ctl", ["stop", "-c", "{file}"], "metrics: {port: -1}\n", "forkqctl",
     "{file}: key 'metrics' has invalid value {'port': -1}"),
])
def test_every_command_reports_a_bad_config_in_one_line(tmp_path, module, args, content,
                                                        prefix, message):
    path = tmp_path / "bad.yml"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    fill = {"dir": str(tmp_path), "file": str(path)}
    args = [a.format(**fill) for a in args]
    env = own_env()
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=str(tmp_path), env=env,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prefix}: ")
    assert message.replace("{dir}", fill["dir"]).replace("{file}", fill["file"]) in lines[0]


def test_an_invalid_flag_value_names_the_command_line(tmp_path):
    result = run_forkq("start", "-P", "0", cwd=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == ("forkq: command line: key 'processes' has invalid value 0: "
                                     "expected an integer from 1 to 256: each is a forked copy "
                                     "of the application")


def test_start_flags_override_the_config_file():
    args = cli.build_parser().parse_args(
        ["start", "-c", "x.yml", "-r", "app.jobs", "-r", "app.more", "-q", "critical,3",
         "-q", "default", "-C", "7", "-P", "3", "-t", "9", "-g", "blue", "--logfile", "f.log",
         "--pidfile", "f.pid", "--loglevel", "error"])
    assert cli.start_flags(args) == {
        "require": ["app.jobs", "app.more"], "queues": ["critical,3", "default"],
        "concurrency": 7, "processes": 3, "timeout": 9.0, "tag": "blue", "logfile": "f.log",
        "pidfile": "f.pid", "loglevel": "error"}


@pytest.mark.slow
def test_start_applies_flags_to_the_children(start_master, redis):
    master = start_master("-P", "1", "-C", "2", "-g", "flagged")
    master.ready_pids(1)
    status = master.status()
    assert (status["processes"], status["concurrency"], status["tag"]) == (1, 2, "flagged")
    master.send(signal.SIGINT)
    assert master.wait_exit(10) == 0


@pytest.mark.slow
def test_a_lone_worker_takes_the_worker_flags_of_forkq_start(monkeypatch, tmp_path):
    from forkq import worker

    loaded = []
    monkeypatch.setattr(worker.config_module, "load",
                        lambda path, flags: loaded.append((path, flags)) or exit_early())
    monkeypatch.setattr(cli.config_module, "load",
                        lambda path, flags: loaded.append((path, flags)) or exit_early())
    flags = ["-c", "x.yml", "-r", "jobs", "-q", "a,2", "-q", "b", "-C", "3", "-v"]
    for command in (lambda: worker.main(flags), lambda: cli.main(["start", *flags])):
        with pytest.raises(SystemExit):
            command()
    (worker_path, worker_flags), (start_path, start_flags) = loaded
    assert worker_path == start_path == "x.yml"
    assert worker_flags == {"require": ["jobs"], "queues": ["a,2", "b"], "concurrency": 3,
                            "loglevel": "debug"}
    assert {key: start_flags[key] for key in worker_flags} == worker_flags


def exit_early():
    raise SystemExit(0)


def test_worker_runs_one_standalone_worker(tmp_path, redis_url, redis):
    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: {redis_url}\nrequire: [e2e_jobs]\nconcurrency: 2\n"
                      f"data_dir: {tmp_path / 'data'}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]))
    with running(["-m", "forkq.cli", "worker", "-c", str(config)], str(tmp_path), env):
        jid = e2e_jobs.Record.perform_async()
        wait_for(lambda: redis.hget("e2e:runs", jid) == "1", 15, message="job run")


@contextlib.contextmanager
def running(argv: list[str], cwd: str, env: dict):
    """A worker process for the block; stopped with TERM after it, which it must obey."""
    worker = subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield worker
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_web_serves_the_config_at_the_given_bind(tmp_path, monkeypatch):
    import forkq.web

    calls = []
    monkeypatch.setattr(forkq.web, "serve", lambda config, bind: calls.append((config, bind)))
    config = tmp_path / "forkq.yml"
    config.write_text("tag: webtag\n")
    assert cli.main(["web", "-c", str(config), "--bind", "127.0.0.1:0"]) == 0
    assert [(c.tag, bind) for c, bind in calls] == [("webtag", "127.0.0.1:0")]
    assert cli.main(["web", "-c", str(config), "--bind", "[::1]"]) == 0
    assert calls[-1][1] == "[::1]:7433"
    config.write_text("web: {bind: '::1', port: 8001}\n")
    assert cli.main(["web", "-c", str(config)]) == 0
    assert calls[-1][1] == "[::1]:8001"


def test_the_bin_shims_run_the_commands(tmp_path):
    for name in ("forkq", "forkqctl"):
        shim = os.path.join(ROOT, "bin", name)
        assert os.access(shim, os.X_OK)
        # Run with this interpreter: the shims' "python3" may lack the dependencies.
        result = subprocess.run([sys.executable, shim, "--help"], cwd=str(tmp_path),
                                capture_output=True, text=True, timeout=20)
        assert result.returncode == 0 and f"usage: {name}" in result.stdout


def enqueue(*args: str, cwd: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``forkq enqueue`` as an operator runs it: a subprocess, the config found from ``cwd``."""
    if env is None:
        env = own_env()
    env = dict(env, PYTHONPATH=os.pathsep.join([ROOT, TESTS]))
    return subprocess.run([sys.executable, "-m", "forkq.cli", "enqueue", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=20)


def api_on(redis, namespace: str = ""):
    from forkq.api import Api
    from forkq.keys import Keys

    return Api(redis, Keys(namespace))


@pytest.mark.slow
def test_enqueue_pushes_by_name_and_a_worker_runs_it(tmp_path, redis_url, redis):
    # The file names the namespace and a Redis nobody listens on; REDIS_URL wins over it, as
    # for every command. The job's module is not importable by the enqueueing process.
    (tmp_path / "forkq.yml").write_text(
        f"redis_url: redis://127.0.0.1:1/0\nnamespace: ops\nrequire: [e2e_jobs]\n"
        f"poll_interval: 0.1\nheartbeat_interval: 0.5\ndata_dir: {tmp_path / 'data'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKQ_")}
    env.update(REDIS_URL=redis_url, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "forkq.cli", "enqueue", "--no-check",
                             "e2e_jobs.Record",
                             '[7, "seven", {"k": [1.5, null]}]'], cwd=str(tmp_path), env=env,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    jid = result.stdout.strip()
    assert len(jid) == 24 and result.stdout == jid + "\n"
    [entry] = api_on(redis, "ops").queue("default").jobs()
    assert (entry.jid, entry.job_class, entry.args, entry.field("retry")) == (
        jid, "e2e_jobs.Record", [7, "seven", {"k": [1.5, None]}], True)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, TESTS])
    with running(["-m", "forkq.worker"], str(tmp_path), env):
        wait_for(lambda: redis.hget("e2e:runs", jid) == "1", 15, message="the job's run")


def test_enqueue_schedules_with_the_given_queue_and_retry(tmp_path, redis_url, redis):
    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: {redis_url}\n")
    before = time.time()
    first = enqueue("--no-check", "NotImportable", "[]", "-c", str(config), "--queue", "critical",
                    "--retry", "0", "--in", "60", cwd=str(tmp_path))
    second = enqueue("--no-check", "Other::RubyJob", '["x"]', "-c", str(config), "--retry", "false",
                     "--at", "2030-01-31T09:00:00+01:00", cwd=str(tmp_path))
    past = enqueue("--no-check", "Late", "[]", "-c", str(config), "--at", "1", cwd=str(tmp_path))
    assert (first.returncode, first.stderr, second.returncode, second.stderr) == (0, "", 0, "")
    [late] = api_on(redis).queue("default").jobs()  # a time in the past enqueues at once
    assert (past.returncode, late.jid, late.job_class) == (0, past.stdout.strip(), "Late")
    entries = {entry.jid: entry for entry in api_on(redis).scheduled.page()}
    soon, later = entries[first.stdout.strip()], entries[second.stdout.strip()]
    assert (soon.job_class, soon.queue, soon.field("retry"), soon.args) == (
        "NotImportable", "critical", 0, [])
    assert before + 60 <= soon.score <= time.time() + 60
    assert (later.job_class, later.queue, later.field("retry"), later.args) == (
        "Other::RubyJob", "default", False, ["x"])
    assert later.score == 1896076800.0  # 2030-01-31T08:00:00Z


def test_enqueue_check_goes_through_the_job_class(tmp_path, redis_url, redis):
    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: {redis_url}\nrequire: [jobs]\n")
    ok = enqueue("--check", "jobs.add", "[1, 2]", "-c", str(config), cwd=str(tmp_path))
    named = enqueue("--check", "HardJob", '["a", "b"]', "-c", str(config), cwd=str(tmp_path))
    arity = enqueue("--check", "jobs.add", "[1]", "-c", str(config), cwd=str(tmp_path))
    unknown = enqueue("--check", "jobs.nope", "[]", "-c", str(config), cwd=str(tmp_path))
    misspelt = enqueue("jobs.ad", "[1, 2]", "-c", str(config), cwd=str(tmp_path))  # by default
    assert (ok.returncode, ok.stderr, named.returncode, named.stderr) == (0, "", 0, "")
    [entry] = api_on(redis).queue("other").jobs()  # the class's own queue
    assert (entry.jid, entry.job_class, entry.args) == (ok.stdout.strip(), "jobs.add", [1, 2])
    assert api_on(redis).queue("default").jobs()[0].job_class == "HardJob"
    assert (arity.returncode, arity.stdout) == (1, "")
    assert arity.stderr == ("forkq: enqueue: jobs.add.perform_async: perform(a, b) takes 2 "
                            "arguments, but 1 were given\n")
    assert unknown.returncode == 1 and unknown.stderr.startswith(
        "forkq: enqueue: no job named 'jobs.nope' is registered by the modules of "
        "require: ['jobs']")
    assert (misspelt.returncode, misspelt.stdout) == (1, "")
    assert misspelt.stderr == (
        "forkq: enqueue: no job named 'jobs.ad' is registered by the modules of require: "
        "['jobs'] (did you mean jobs.add?); check the name, or pass --no-check to push it by "
        "name anyway (a job another program runs)\n")
    assert api_on(redis).queue("other").size == 1


@pytest.mark.parametrize("argv, message", [
    (["X", "[1,"], "ARGS_JSON '[1,' is not valid JSON: Expecting value: line 1 column 4"),
    (["X", '{"a": 1}'], "ARGS_JSON must be a JSON array of the job's arguments, e.g. '[42, \"x\"]'"
                        " ('[]' for none), not a JSON object: '{\"a\": 1}'"),
    (["X", "42"], "not a JSON number: '42'"),
    (["X", "[NaN]"], "ARGS_JSON '[NaN]': NaN is not JSON, and no job argument can carry it"),
    (["X", "[-Infinity]"], "-Infinity is not JSON"),
    (["X", "[1e400]"], "1e400 is too large for a float; pass it as a string"),
    (["X", '[{"a": 1, "a": 2}]'], "the key 'a' appears twice in one object"),
    (["X", "[" * 60_000 + "]" * 60_000], "nests deeper than the JSON reader allows; flatten it"),
    (["X", "[1, " + "[" * 101 + "]" * 101 + "]"], "ARGS_JSON: args[1]" + "[0]" * 100 +
                                                  " nests lists and dicts more than 100 deep"),
    (["X", '[1, "\\ud800"]'], "ARGS_JSON: args[1] is a string holding a lone surrogate "
                              "('\\ud800' at index 0), which UTF-8 cannot encode"),
    (["X", '["\udcff"]'], "ARGS_JSON: args[0] is a string holding a lone surrogate"),
    (["X", "[" + "9" * 5000 + "]"], "Exceeds the limit (4300 digits) for integer string"),
    (["X", "[]", "--in", "soon"], "--in 'soon': expected a number of seconds"),
    (["X", "[]", "--in", "inf"], "--in 'inf': expected a finite number of seconds"),
    (["X", "[]", "--in", "-5"], "--in '-5': expected seconds >= 0"),
    (["X", "[]", "--at", "tomorrow"], "--at 'tomorrow': expected epoch seconds or an ISO 8601"),
    (["X", "[]", "--at", "2030-01-31T09:00"], "--at '2030-01-31T09:00' has no UTC offset"),
    (["X", "[]", "--at", "1893456000000"], "--at '1893456000000' is more than 100 years"),
    (["X", "[]", "--retry", "yes"], "--retry 'yes': expected true, false or a count"),
    (["X", "[]", "--retry", "101"], "X: option 'retry' must be true, false or a count from 0"),
    (["X", "[]", "--queue", "a,b"], "X: option 'queue' must be a usable queue name"),
    (["a job", "[]"], "CLASS 'a job': expected a job's wire name, without whitespace"),
    (["", "[]"], "CLASS '': expected a job's wire name"),
])
def test_enqueue_refuses_bad_input_in_one_line(argv, message, capsys):
    assert cli.main(["enqueue", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("forkq: enqueue: ") and message in captured.err


@pytest.mark.parametrize("argv, message", [
    (["X", "[]", "--bogus"], "unrecognized arguments: --bogus"),
    (["X", "[]", "--in", "1", "--at", "2"], "argument --at: not allowed with argument --in"),
    (["X"], "the following arguments are required: ARGS_JSON"),
])
def test_enqueue_flags_argparse_refuses_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["enqueue", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err.splitlines()[-1]


def test_enqueue_without_redis_says_so_and_pushes_nothing(tmp_path):
    result = enqueue("--no-check", "X", "[]", cwd=str(tmp_path),
                     env=dict(os.environ, REDIS_URL="redis://127.0.0.1:1/0"))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("forkq: enqueue: Redis at redis://127.0.0.1:1/0: ")
    assert result.stderr.rstrip().endswith("(nothing was enqueued)")
    assert result.stderr.count("\n") == 1


def test_enqueue_without_redis_keeps_the_password_out(tmp_path):
    result = enqueue("--no-check", "X", "[]", cwd=str(tmp_path),
                     env=dict(os.environ, REDIS_URL="redis://:s3cretpw@127.0.0.1:1/0"))
    assert result.returncode == 1 and "s3cretpw" not in result.stderr
    assert result.stderr.startswith("forkq: enqueue: Redis at redis://:***@127.0.0.1:1/0: ")


class UniqueReport(forkq.Job):
    options = {"unique_for": 60}

    def perform(self, day):
        pass


def test_enqueue_check_names_both_reasons_a_push_returns_none(redis):
    name = UniqueReport.wire_name()
    assert cli.push_checked(name, ["mon"], {}, None, ())
    with pytest.raises(ForkqError) as refused:
        cli.push_checked(name, ["mon"], {}, None, ())
    assert str(refused.value) == (
        f"enqueue: the push of {name} was refused, by a client middleware or by a unique lock "
        f"another job holds (unique_for); nothing was enqueued")
    assert redis.llen("queue:default") == 1


def test_enqueue_help_says_what_the_class_name_needs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["enqueue", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    assert "By default the name is checked first: the modules of the config's require:" in text
    assert "With --no-check the class need not be importable here" in text


def hash_password(stdin: str) -> subprocess.CompletedProcess:
    command = ("-m", "forkq.cli", "web", "--hash-password")
    return subprocess.run([sys.executable, *command], input=stdin, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))


def test_hash_password_reads_a_piped_password_and_prints_only_the_hash():
    from forkq.web import security

    result = hash_password("pa ss\nignored\n")
    assert result.returncode == 0 and result.stderr == ""
    hashed = result.stdout.strip()
    assert result.stdout == hashed + "\n"
    security.check_hash_format(hashed)
    assert security.verify_password("pa ss", hashed) and not security.verify_password("pa", hashed)


def test_hash_password_refuses_an_empty_password():
    result = hash_password("\n")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("forkq: web --hash-password: the password is empty")


def read_terminal(fd: int, seen: bytearray, wanted: bytes | None, timeout: float = 10.0) -> None:
    """Read the terminal's output into ``seen`` until it holds ``wanted`` (None: until closed)."""
    import select

    deadline = time.monotonic() + timeout
    while wanted is None or wanted not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {wanted!r} on the terminal; it showed {bytes(seen)!r}"
        if select.select([fd], [], [], remaining)[0]:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                assert wanted is None, f"terminal closed before {wanted!r}: {bytes(seen)!r}"
                return
            seen += chunk


@pytest.mark.parametrize("second, code", [(b"tty pw", 0), (b"other", 1)])
def test_hash_password_on_a_terminal_asks_twice_without_echo(second, code):
    import pty

    from forkq.web import security

    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty, as in an operator's shell
        os.execve(sys.executable, [sys.executable, "-m", "forkq.cli", "web", "--hash-password"],
                  dict(os.environ, PYTHONPATH=ROOT))
    seen = bytearray()
    try:
        read_terminal(fd, seen, b"Password for the forkq web UI: ")
        os.write(fd, b"tty pw\n")
        read_terminal(fd, seen, b"Again: ")
        os.write(fd, second + b"\n")
        read_terminal(fd, seen, None)
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    output = bytes(seen).decode()
    assert os.waitstatus_to_exitcode(status) == code, output
    assert "tty pw" not in output and "other" not in output and "Warning" not in output
    if code == 0:
        hashed = output.split("Again: ", 1)[1].strip()
        assert security.verify_password("tty pw", hashed)
    else:
        assert "forkq: web --hash-password: the two passwords differ; nothing printed" in output


def test_web_reads_a_bare_number_as_the_port(tmp_path, monkeypatch):
    import forkq.web

    calls = []
    monkeypatch.setattr(forkq.web, "serve", lambda config, bind: calls.append(bind))
    config = tmp_path / "forkq.yml"
    config.write_text(f"data_dir: {tmp_path}\nredis_url: redis://127.0.0.1:1/0\n")
    assert cli.main(["web", "-c", str(config), "--bind", "7613"]) == 0
    assert calls == ["127.0.0.1:7613"]


def test_version_and_a_bare_forkq_list_what_there_is(capsys):
    from forkq import __version__

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert (exit_info.value.code, capsys.readouterr().out) == (0, f"forkq {__version__}\n")
    assert cli.main([]) == 2
    listing = capsys.readouterr().err
    for command in ("start", "worker", "web", "enqueue"):
        assert f"\n    {command} " in listing


@pytest.mark.parametrize("argv, fragment", [
    (["start", "--help"], "Start the supervisor: it reads the config, checks that Redis answers"),
    (["web", "--help"], "Serve the web UI (queues, busy threads"),
    (["worker", "--help"], "usage: forkq worker [-h]"),
])
def test_every_command_help_describes_it(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0 and fragment in capsys.readouterr().out


@pytest.mark.parametrize("argv, level", [([], "INFO"), (["-v"], "DEBUG"),
                                         (["--loglevel", "warn"], "WARNING")])
def test_start_takes_the_log_level_from_the_command_line(argv, level):
    args = cli.build_parser().parse_args(["start", *argv])
    assert config.load(None, cli.start_flags(args), environ={}).loglevel == level


def test_a_missing_require_module_says_where_modules_are_found(tmp_path, monkeypatch):
    from forkq.worker import import_required

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ForkqError) as caught:
        import_required(["myapp_nowhere.jobs"])
    assert str(caught.value) == (
        f"require: could not import 'myapp_nowhere.jobs': ModuleNotFoundError: No module named "
        f"'myapp_nowhere' (modules are found from the working directory {tmp_path}, which "
        f"forkq puts on sys.path: run forkq from your project's root, or set PYTHONPATH)")


def test_enqueue_starts_the_embedded_redis_when_none_runs_and_the_job_stays(tmp_path):
    from forkq.connection.embedded import EmbeddedRedis, is_running

    data = tmp_path / "data"
    (tmp_path / "forkq.yml").write_text(f"data_dir: {data}\n")
    result = enqueue("--no-check", "Later", "[1]", cwd=str(tmp_path))
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert not is_running(str(data))  # stopped by the command that started it
    server = EmbeddedRedis(str(data)).start()
    try:
        [entry] = api_on(server_client(server)).queue("default").jobs()
        assert (entry.jid, entry.job_class) == (result.stdout.strip(), "Later")
    finally:
        server.stop()


@pytest.mark.slow
def test_forkq_web_stops_the_embedded_redis_it_started_when_terminated(tmp_path):
    from forkq.connection.embedded import is_running

    data = str(tmp_path / "data")
    (tmp_path / "forkq.yml").write_text(f"data_dir: {data}\n")
    env = own_env()
    web = subprocess.Popen([sys.executable, "-m", "forkq.cli", "web", "--bind", "127.0.0.1:0"],
                           cwd=str(tmp_path), env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert web.stderr.readline().startswith("forkq web: listening on http://127.0.0.1:")
        assert is_running(data)
        web.send_signal(signal.SIGTERM)
        assert web.wait(15) == 0
    finally:
        web.kill()
        web.wait()
    assert not is_running(data)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize("command", [["-m", "forkq.worker"], ["-m", "forkq.cli", "start"]],
                         ids=["worker", "start"])
def test_a_stop_signal_while_the_application_imports_stops_the_embedded_redis(
        tmp_path, command, signum):
    from forkq.connection.embedded import is_running

    data, marker = tmp_path / "data", tmp_path / "importing"
    (tmp_path / "slowapp.py").write_text(f"import pathlib, time\n"
                                         f"pathlib.Path({str(marker)!r}).touch()\n"
                                         f"time.sleep(60)\n")
    (tmp_path / "forkq.yml").write_text(f"data_dir: {data}\nrequire: [slowapp]\n")
    env = own_env()
    # INT as a terminal sends it: not ignored, as it is in a shell's background job
    process = subprocess.Popen([sys.executable, *command, "-c", "forkq.yml"], cwd=str(tmp_path),
                               env=env, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(marker.exists, 30, message="the application's import")
        assert is_running(str(data))
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signum
    assert err.splitlines()[-1:] == [f"forkq: stopped by {signum.name} while starting"], err
    assert not is_running(str(data)) and not (data / "master.pid").exists()


def server_client(server):
    import redis as redis_py

    return redis_py.Redis(unix_socket_path=server.url[len("unix://"):], decode_responses=True)


def test_web_starts_the_embedded_redis_when_none_runs(tmp_path, monkeypatch):
    import forkq.web
    from forkq.connection.embedded import is_running

    data = str(tmp_path / "data")
    seen = []
    monkeypatch.setattr(forkq.web, "serve", lambda config, bind: seen.append(is_running(data)))
    monkeypatch.delenv("REDIS_URL", raising=False)
    (tmp_path / "forkq.yml").write_text(f"data_dir: {data}\n")
    assert cli.main(["web", "-c", str(tmp_path / "forkq.yml")]) == 0
    assert seen == [True] and not is_running(data)


@pytest.mark.slow
def test_forkq_redis_keeps_the_embedded_server_until_terminated(tmp_path):
    from forkq.connection.embedded import is_running

    data = str(tmp_path / "data")
    (tmp_path / "forkq.yml").write_text(f"data_dir: {data}\n")
    env = own_env()
    server = subprocess.Popen([sys.executable, "-m", "forkq.cli", "redis"], cwd=str(tmp_path),
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr.readline().startswith(f"forkq: embedded Redis at unix://{data}/")
        assert is_running(data)
        second = enqueue("--no-check", "X", "[]", cwd=str(tmp_path))  # finds it, leaves it
        assert second.returncode == 0 and is_running(data)
        again = subprocess.run([sys.executable, "-m", "forkq.cli", "redis"], cwd=str(tmp_path),
                               env=env, capture_output=True, text=True, timeout=30)
        assert (again.returncode, again.stderr) == (
            1, f"forkq: redis: an embedded server already runs under {data}\n")
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0
        assert not is_running(data)
    finally:
        server.kill()
        server.wait()


@pytest.mark.fault
def test_ctrl_c_while_enqueue_waits_on_redis_says_interrupted_without_a_traceback(tmp_path):
    import psutil

    import harness
    from helpers import stop_process

    server = harness.Server()
    try:
        stop_process(server.process.pid)
        command = subprocess.Popen(
            [sys.executable, "-m", "forkq.cli", "enqueue", "--no-check", "X", "[]"],
            cwd=str(tmp_path), env=dict(own_env(), REDIS_URL=server.url),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: any(c.raddr and c.raddr.port == server.port
                             for c in psutil.Process(command.pid).net_connections()), 15,
                 message="enqueue connected to the stopped Redis")
        command.send_signal(signal.SIGINT)
        _, err = command.communicate(timeout=15)
        assert command.returncode == 130 and err == "forkq: interrupted\n"
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
