"""The ``forkq`` command: flags over the config, one-line errors, the worker and web commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import e2e_jobs
from forkq import cli
from helpers import wait_for
from masters import ROOT, TESTS


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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "FORKQ_"))}
    env["PYTHONPATH"] = ROOT
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
         "--pidfile", "f.pid"])
    assert cli.start_flags(args) == {
        "require": ["app.jobs", "app.more"], "queues": ["critical,3", "default"],
        "concurrency": 7, "processes": 3, "timeout": 9.0, "tag": "blue", "logfile": "f.log",
        "pidfile": "f.pid"}


@pytest.mark.slow
def test_start_applies_flags_to_the_children(start_master, redis):
    master = start_master("-P", "1", "-C", "2", "-g", "flagged")
    master.ready_pids(1)
    status = master.status()
    assert (status["processes"], status["concurrency"], status["tag"]) == (1, 2, "flagged")
    master.send(signal.SIGINT)
    assert master.wait_exit(10) == 0


@pytest.mark.slow
def test_worker_runs_one_standalone_worker(tmp_path, redis_url, redis):
    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: {redis_url}\nrequire: [e2e_jobs]\nconcurrency: 2\n"
                      f"data_dir: {tmp_path / 'data'}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]))
    worker = subprocess.Popen([sys.executable, "-m", "forkq.cli", "worker", "-c", str(config)],
                              cwd=str(tmp_path), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        jid = e2e_jobs.Record.perform_async()
        wait_for(lambda: redis.hget("e2e:runs", jid) == "1", 15, message="job run")
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
