"""bench/compare_async.py runs end to end with a tiny count, so that it cannot rot.

It asserts that every system ran each body and gave each figure, never how fast: speed is
measured by the benchmark itself, side by side (DESIGN.md §8). A peer whose package (or, for
streaq, a redis-server 7) is missing here is skipped with the benchmark's reason; tests/run
installs the ``bench`` extra, so there none is.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ["forkq", "arq", "saq", "taskiq", "streaq", "forkq-threads"]


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "async.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "compare_async.py"), "--jobs", "20", "--runs", "1",
         "--probes", "2", "--json", str(out), "--only", *SYSTEMS],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
        timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("system", SYSTEMS)
def test_each_system_drains_both_bodies_and_answers_the_probes(record, system):
    if system in record["meta"]["skipped"]:
        pytest.skip(record["meta"]["skipped"][system])
    figures = record["runs"][0][system]
    for body in ("incr", "sleep"):
        if system not in ("forkq", "forkq-threads") and "stalled" in figures[body]:
            pytest.skip(f"{system}'s worker stalled, which the benchmark reports and runs on: "
                        f"{figures[body]['stalled']}")
        # CPU times tick in 10 ms: a 20-job drain may show none
        assert figures[body]["rate"] > 0 and figures[body]["cpu_us"] >= 0, (body, figures)
        assert figures[body]["rss_mb"] > 0
    assert 0 <= figures["latency"]["p50"] <= figures["latency"]["p99"]


@pytest.mark.slow
def test_the_table_rates_forkq_against_the_best_peer(record):
    ran = [system for system in SYSTEMS if system not in record["meta"]["skipped"]]
    if ran == ["forkq", "forkq-threads"]:
        pytest.skip("no peer installed: " + "; ".join(record["meta"]["skipped"].values()))
    rate = next(row for row in record["rows"] if row["figure"] == "incr: jobs/s")
    assert rate["best_peer"] in ran and not rate["best_peer"].startswith("forkq")
    assert len(rate["ratio"]) == 1


@pytest.fixture
def compare_async(monkeypatch):
    """The benchmark's module, its stall deadline shortened."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import compare_async

    monkeypatch.setattr(compare_async, "STALL", 0.2)
    return compare_async


def test_a_drain_that_stops_short_is_stalled_and_one_that_ends_is_not(compare_async):
    counts = iter([0, 1, 2, 3])
    compare_async.wait_for_the_end(lambda: next(counts, 3), 3)
    with pytest.raises(compare_async.Stalled, match="4 of 5 jobs completed, then none"):
        compare_async.wait_for_the_end(lambda: 4, 5)


def test_a_stalled_drain_is_left_out_of_its_figures_and_named(compare_async):
    def ran(rate):
        return {"incr": {"rate": rate}, "sleep": {"rate": rate}}

    runs = [{"forkq": ran(100.0), "taskiq": ran(40.0)},
            {"forkq": ran(90.0), "taskiq": {**ran(45.0), "incr": {"stalled": "9 of 10"}}},
            {"forkq": ran(80.0), "taskiq": ran(50.0)}]
    rate = next(row for row in compare_async.table(runs, ["forkq", "taskiq"])
                if row["figure"] == "incr: jobs/s")
    assert rate["values"]["taskiq"] == [40.0, 50.0]
    assert rate["ratio"] == [2.5, 1.6], "each run's forkq against the same run's peer"
    assert compare_async.stalled(runs) == ["stalled, left out: taskiq, incr, run 2: 9 of 10"]


def test_the_coroutine_body_alone_runs_beside_its_synchronous_twin():
    """``aio_body_alone.py``: both loops run and print their cost per call."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "aio_body_alone.py"), "--calls", "30",
         "--at-once", "5"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "await redis.incr() (5 at once)" in done.stdout and "ratio" in done.stdout
