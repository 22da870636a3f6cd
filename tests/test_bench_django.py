"""``bench/compare_django.py`` still runs: every system drains a handful of tasks of both bodies
through one worker process and the figures land in the JSON. Speeds are not checked (DESIGN.md
§8: benchmarks measure, tests never assert on throughput)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "compare_django.py")
FIGURES = {"rate", "cpu_us", "redis_us", "enqueue_rate", "enqueue_cpu_us"}


@pytest.mark.slow
def test_the_django_comparison_runs_every_system_on_both_bodies(tmp_path):
    record_path = tmp_path / "django.json"
    done = subprocess.run([sys.executable, SCRIPT, "--tasks", "10", "--runs", "1",
                           "--processes", "1", "--json", str(record_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(record_path.read_text())
    systems = record["meta"]["systems"]
    assert {"forkq", "plain"} <= set(systems)
    (run,) = record["runs"]
    assert set(run) == {f"{system}-{body}-1" for system in systems for body in ("incr", "orm")}
    for case, figures in run.items():
        assert set(figures) == FIGURES and figures["rate"] > 0 and figures["cpu_us"] >= 0, case
    assert "| incr, 1 | drain, tasks/s |" in done.stdout
    if record["skipped"]:  # bash tests/run installs the bench extra: nothing skips there
        pytest.skip("; ".join(record["skipped"]))


@pytest.mark.slow
def test_the_run_protocol_bench_runs_its_tasks_and_counts_their_calls(tmp_path):
    script = os.path.join(ROOT, "bench", "django_protocol.py")
    done = subprocess.run([sys.executable, script, "--tasks", "5", "--batches", "2", "--calls",
                           "--floor"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 tasks, least of 2 batches:" in done.stdout
    assert "function calls a task" in done.stdout
    assert "15 bodies ran" in done.stdout  # two batches and the counted one, of 5 tasks each
    assert "floor: in all" in done.stdout and "floor: two SET round trips" in done.stdout
