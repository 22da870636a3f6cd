"""Every benchmark in bench/ still runs: each script that has no smoke test of its own runs
here with tiny counts and must exit 0 and print its table. Nothing looks at a figure: tests
never assert on speed.

Each test starts its scripts at once, each on its own private Redis, and names every one that
failed. ``compare.py`` and ``report.py`` have their own test (``test_bench_compare.py``), so
that no two ``compare.py`` runs meet (it refuses to start beside another one's processes).
What needs Ruby Sidekiq skips, saying so, where Debian's ``ruby-sidekiq`` is missing. Each test stands alone,
so that pytest-xdist may hand them to different workers.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
HAS_RUBY = bool(shutil.which("ruby") and shutil.which("sidekiq"))
NO_RUBY = "needs Ruby Sidekiq: apt-get install ruby-sidekiq (bash tests/run installs it)"
#: seconds one tiny run may take on a loaded machine before it counts as hung
TIMEOUT = 600

#: run id → (script and its tiny arguments, a fragment its output must hold)
RUNS = {
    "bench": (["bench.py", "--jobs", "200", "--runs", "1", "--samples", "2"], "Drain of 200"),
    "bench_django": (["bench_django.py", "--jobs", "50"], "plain forkq"),
    "bench_sleep": (["bench_sleep.py", "--jobs", "20", "--seconds", "0.01", "--only",
                     "async:100", "threads:10"], "| threads:10 |"),
    "fetch_pause": (["fetch_pause.py", "--calls", "20", "--blocks", "1"], "nothing paused"),
    "flow_cost": (["flow_cost.py", "--jobs", "200", "--runs", "1"], "Worker drain"),
    "log_lines": (["log_lines.py", "--jobs", "1000", "--records", "50", "--runs", "1"],
                  "record line from a job"),
    "tracing_cost": (["tracing_cost.py", "--jobs", "200", "--runs", "1"], "Worker CPU per job"),
    "workflow_cost": (["workflow_cost.py", "--jobs", "200", "--runs", "1", "--steps", "3"],
                      "chain step"),
    "scale": (["scale.py", "--tiny", "--no-sidekiq", "--sections", "queues,sets,web"],
              "### Web UI page times"),
    "placement_cost": (["placement_cost.py", "--jobs", "200", "--runs", "1"], "Worker drain"),
    "floor_thread": (["floor_thread.py", "--jobs", "200", "--runs", "1"], "× the floor's"),
    # a Redis Cluster of Debian's redis-server and redis-cli (tests/run installs both)
    "cluster": (["cluster.py", "--jobs", "200", "--runs", "1", "--queues", "1"], "load after"),
    "cluster_shards": (["cluster.py", "--jobs", "200", "--runs", "1", "--shards", "3"],
                       "1 queue in 3 shards"),
    "cluster_batch": (["cluster.py", "--jobs", "200", "--runs", "1", "--queues", "1", "--batch"],
                      "cluster, 3 primaries, batch members"),
    "cluster_admin": (["cluster_admin.py", "--queues", "3", "--runs", "1"], "queue_summaries"),
}
#: the same for the runs beside Ruby Sidekiq; compare.py drains 2,000 jobs, since fewer can
#: all finish before its first sample
SIDEKIQ_RUNS = {
    "scale_sidekiq": (["scale.py", "--tiny", "--sections", "depth,memory"],
                      "### Redis memory per job"),
}


def command(script: list[str]) -> list[str]:
    return [sys.executable, os.path.join(BENCH, script[0]), *script[1:]]


def run_all(runs: dict, directory) -> dict[str, tuple[int, str]]:
    """Every run started at once, then waited for: run id → (exit code, output)."""
    started = {}
    for name, (script, _) in runs.items():
        path = directory / f"{name}.out"
        with open(path, "w") as output:
            started[name] = (path, subprocess.Popen(
                command(script), cwd=ROOT, stdout=output,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    results = {}
    for name, (path, process) in started.items():
        try:
            code = process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        results[name] = (code, path.read_text())
    return results


def failures(runs: dict, results: dict) -> list[str]:
    return [f"{' '.join(runs[name][0])} exited {code}:\n{output[-2000:]}"
            for name, (code, output) in results.items()
            if code != 0 or runs[name][1] not in output]


def test_the_benchmarks_run_with_tiny_counts(tmp_path):
    failed = failures(RUNS, run_all(RUNS, tmp_path))
    assert not failed, "\n\n".join(failed)


@pytest.mark.skipif(not HAS_RUBY, reason=f"compare.py and scale.py beside Sidekiq {NO_RUBY}")
def test_the_benchmarks_beside_sidekiq_run_with_tiny_counts(tmp_path):
    failed = failures(SIDEKIQ_RUNS, run_all(SIDEKIQ_RUNS, tmp_path))
    assert not failed, "\n\n".join(failed)


def test_the_loops_without_a_job_system_drain_their_jobs(redis, redis_url):
    """``body_alone.py`` and ``floor_loop.py``, which ``compare.py`` runs as its ceiling and
    its floor, each on a few jobs released as the harness releases them."""
    env = dict(os.environ, BENCH_REDIS_URL=redis_url, PYTHONPATH=os.pathsep.join([ROOT, BENCH]))
    job = '{"class":"BenchIncr","args":[40],"jid":"%024d","queue":"default"}'
    redis.lpush("queue:default", *[job % index for index in range(40)])
    redis.rpush("bench:go", *["go"] * 4)
    floor = subprocess.run(command(["floor_loop.py", "2"]), env=env, timeout=TIMEOUT)
    assert floor.returncode == 0 and redis.get("bench:counter") == "40"
    assert redis.llen("queue:default") == 0
    redis.delete("bench:counter")
    body = subprocess.run(command(["body_alone.py", "30", "2"]), env=env, timeout=TIMEOUT)
    assert body.returncode == 0 and int(redis.get("bench:counter")) >= 30


def test_every_benchmark_script_has_a_smoke_test():
    """A script here (a file with a ``__main__`` guard) is named by this module or by another
    ``tests/test_bench_*.py``, so a new benchmark cannot be added without one."""
    tests = "".join(open(path).read()
                    for path in glob.glob(os.path.join(ROOT, "tests", "test_bench_*.py")))
    scripts = [os.path.basename(path) for path in glob.glob(os.path.join(BENCH, "*.py"))
               if '__name__ == "__main__"' in open(path).read()]
    assert scripts and [s for s in scripts if f'"{s}"' not in tests] == []
