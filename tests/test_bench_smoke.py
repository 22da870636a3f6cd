"""Every benchmark in bench/ still runs: each script that has no smoke test of its own runs
here with tiny counts and must exit 0 and print its table. Nothing looks at a figure: tests
never assert on speed.

The scripts run at once (the module's fixture starts them all, each on its own private Redis),
then ``compare.py`` alone, since it refuses to start while another benchmark's processes run
(in a process namespace of its own where ``unshare`` allows, so that other checkouts' runs on
the same machine do not count).
What needs Ruby Sidekiq skips, saying so, where Debian's ``ruby-sidekiq`` is missing.
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

#: run id → (script and its tiny arguments, a fragment its output must hold, needs Ruby)
RUNS = {
    "bench": (["bench.py", "--jobs", "200", "--runs", "1", "--samples", "2"], "Drain of 200",
              False),
    "bench_django": (["bench_django.py", "--jobs", "50"], "plain forkq", False),
    "bench_sleep": (["bench_sleep.py", "--jobs", "20", "--seconds", "0.01", "--only",
                     "async:100", "threads:10"], "| threads:10 |", False),
    "fetch_pause": (["fetch_pause.py", "--calls", "20", "--blocks", "1"], "nothing paused",
                    False),
    "flow_cost": (["flow_cost.py", "--jobs", "200", "--runs", "1"], "Worker drain", False),
    "log_lines": (["log_lines.py", "--jobs", "1000", "--records", "50", "--runs", "1"],
                  "record line from a job", False),
    "tracing_cost": (["tracing_cost.py", "--jobs", "200", "--runs", "1"], "Worker CPU per job",
                     False),
    "workflow_cost": (["workflow_cost.py", "--jobs", "200", "--runs", "1", "--steps", "3"],
                      "chain step", False),
    "scale": (["scale.py", "--tiny", "--no-sidekiq", "--sections", "queues,sets,web"],
              "### Web UI page times", False),
    "scale_sidekiq": (["scale.py", "--tiny", "--sections", "depth,memory"],
                      "### Redis memory per job", True),
}
COMPARE = ["compare.py", "--jobs", "2000", "--runs", "1", "--samples", "2"]


def command(script: list[str]) -> list[str]:
    return [sys.executable, os.path.join(BENCH, script[0]), *script[1:]]


class Runs:
    """The tiny runs, started together; each test waits for its own."""

    def __init__(self, directory) -> None:
        self.outputs, self.processes = {}, {}
        for name, (script, _, ruby) in RUNS.items():
            if ruby and not HAS_RUBY:
                continue
            self.outputs[name] = directory / f"{name}.out"
            with open(self.outputs[name], "w") as output:
                self.processes[name] = subprocess.Popen(
                    command(script), cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL)

    def result(self, name: str) -> tuple[int, str]:
        code = self.processes[name].wait(TIMEOUT)
        return code, self.outputs[name].read_text()

    def finish(self) -> None:
        for process in self.processes.values():
            try:
                process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    started = Runs(tmp_path_factory.mktemp("bench-smoke"))
    yield started
    started.finish()


@pytest.mark.parametrize("name", list(RUNS))
def test_a_benchmark_runs_with_tiny_counts(runs, name):
    script, fragment, ruby = RUNS[name]
    if ruby and not HAS_RUBY:
        pytest.skip(f"{script[0]} with Sidekiq's columns {NO_RUBY}")
    code, output = runs.result(name)
    assert code == 0 and fragment in output, f"{' '.join(script)} exited {code}:\n{output[-3000:]}"


def own_processes() -> list[str]:
    """A prefix that runs a command in a process namespace of its own, where ``unshare`` can
    make one: there ``compare.py`` sees no other benchmark's processes (other checkouts on a
    shared machine run theirs)."""
    prefix = ["unshare", "-rpf", "--mount-proc"]
    try:
        usable = subprocess.run(prefix + ["true"], capture_output=True).returncode == 0
    except OSError:
        usable = False
    return prefix if usable else []


def test_the_side_by_side_comparison_runs_with_tiny_counts(runs):
    if not HAS_RUBY:
        pytest.skip(f"compare.py {NO_RUBY}")
    runs.finish()  # compare.py refuses to start beside another benchmark's processes
    done = subprocess.run(own_processes() + command(COMPARE), cwd=ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT)
    if "processes of an earlier run are still running" in done.stderr:
        pytest.skip(f"another benchmark runs on this machine: {done.stderr.strip()}")
    assert done.returncode == 0 and "| figure | Sidekiq | forkq |" in done.stdout, \
        f"compare.py exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


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
