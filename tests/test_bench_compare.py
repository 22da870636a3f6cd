"""The side-by-side benchmark and the threads benchmark still run, on a few jobs: they must not
rot between the runs that make the published figures. Nothing here looks at a speed.

``compare.py`` needs Ruby and the sidekiq gem (.ci/run installs them); skipped, with the
reason, where they are missing.
"""

import json
import os
import subprocess
import sys

import pytest

from test_sidekiq_compat import sidekiq_available

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")

pytestmark = pytest.mark.slow


def run_bench(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, os.path.join(BENCH, script), *args],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.skipif(sidekiq_available() is not None, reason=str(sidekiq_available()))
def test_compare_runs_every_setup_side_by_side(tmp_path):
    path = tmp_path / "compare.json"
    out = run_bench("compare.py", "--jobs", "2000", "--runs", "1", "--samples", "2",
                    "--processes", "1", "--json", str(path))
    record = json.loads(path.read_text())
    assert record["meta"]["setups"] == ["pooled", "shared", "quiet", "pinned"]
    drain = record["table"][0]
    assert drain["figure"] == "1 process: steady drain, jobs/s"
    for setup in ("pooled", "shared", "quiet", "pinned"):
        ratio = drain["cells"][setup]["ratio"]
        assert len(ratio) == 1 and ratio[0] > 0
    assert "| figure | both pooled, INFO | Ruby on one shared connection, INFO |" in out
    assert "| both pooled, no per-job lines, each process on one CPU |" in out
    assert record["runs"][0]["latency"]["pinned"]["forkq"]["p50"] > 0
    drains = record["runs"][0]["drain"]  # what forkq's own CPU above the body is taken from
    assert drains["forkq-info-fixed-1"]["cpu_us"] > 0
    assert drains["forkq-warn-fixed-1"]["cpu_us"] > 0
    merged = run_bench("report.py", str(path), str(path))
    assert "| figure | both pooled, INFO | Ruby on one shared connection, INFO |" in merged


def test_compare_refuses_a_table_without_its_headline():
    result = subprocess.run([sys.executable, os.path.join(BENCH, "compare.py"), "--setups",
                             "quiet"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert "--setups takes pooled (always)" in result.stderr


def test_compare_refuses_the_pinned_setup_without_taskset():
    result = subprocess.run([sys.executable, os.path.join(BENCH, "compare.py"), "--setups",
                             "pooled,pinned"], capture_output=True, text=True, timeout=60,
                            cwd=ROOT, env=dict(os.environ, PATH="/nonexistent"))
    assert result.returncode == 2
    assert "taskset, which is not on PATH" in result.stderr


def test_threads_cost_runs_both_bodies():
    out = run_bench("threads_cost.py", "--jobs", "200", "--runs", "1", "--variants",
                    "1 thread,10 threads: pinned to one CPU", "--idle-seconds", "0.5")
    assert "body: INCR" in out and "body: 1 ms of pure Python, then INCR" in out
    assert out.count("| 1 thread |") == 2
    assert out.count("| 10 threads: pinned to one CPU |") == 2
    assert "| service threads stretched |" in out
