"""How the side-by-side benchmark starts each system under test on one Redis, 10 threads per
process: Ruby Sidekiq, forkq, the job body alone in each language, and the least a Python job
system with reliable fetch does around it (``floor_loop.py``).

Each ``start_*`` returns a ``harness.Group`` whose processes (and their descendants) are the
system: its CPU time is theirs. ``blocked()`` says how many Redis clients a started system
holds blocked while idle, 10 per process (Sidekiq's BRPOP, forkq's BLMOVE or BRPOP, the bodies'
wait for the go signal); the harness waits for exactly that many before it starts the clock,
which also proves that every process runs its 10 threads.
"""

from __future__ import annotations

import json
import os
import sys

from harness import Group

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
THREADS = 10


def environment(redis_url: str, ruby_client: str = "pool", loglevel: str = "info") -> dict:
    """What every process of a system gets: the server, and for the Ruby side its body's
    client (``pool`` or ``shared``) and log level (``info`` or ``warn``)."""
    return dict(os.environ, REDIS_URL=redis_url, BENCH_REDIS_URL=redis_url,
                BENCH_RUBY_CLIENT=ruby_client, BENCH_LOGLEVEL=loglevel,
                PYTHONPATH=os.pathsep.join([ROOT, HERE]))


def blocked(processes: int) -> int:
    return THREADS * processes


def pinned_to_one_cpu(index: int, command: list[str]) -> list[str]:
    """``command`` under ``taskset``, kept to one CPU: process ``index`` gets the CPU that
    forkq's ``cpu_affinity: true`` gives its slot ``index`` (modulo the CPUs allowed here)."""
    allowed = sorted(os.sched_getaffinity(0))
    return ["taskset", "-c", str(allowed[index % len(allowed)])] + command


def start_sidekiq(redis_url: str, processes: int, workdir: str, ruby_client: str = "pool",
                  loglevel: str = "info", queues=("default",), pinned: bool = False) -> Group:
    """``processes`` independent ``sidekiq`` processes, as Sidekiq (without Enterprise) runs;
    the body's client and the log level as ``environment`` says; ``queues`` as forkq's config
    has them (names, or ``[name, weight]`` pairs); ``pinned``: each process kept to one CPU
    with ``taskset`` (Sidekiq has no setting of its own for it)."""
    command = ["sidekiq", "-r", os.path.join(HERE, "compare_jobs.rb"), "-c", str(THREADS),
               "-t", "5"]
    for queue in queues:
        command += ["-q", queue if isinstance(queue, str) else f"{queue[0]},{queue[1]}"]
    commands = [pinned_to_one_cpu(index, command) if pinned else command
                for index in range(processes)]
    name = f"sidekiq-{ruby_client}-{loglevel}{'-pinned' if pinned else ''}-{processes}"
    return Group(name, commands, environment(redis_url, ruby_client, loglevel), workdir)


def start_forkq(redis_url: str, processes: int, fetch: str, workdir: str,
                loglevel: str = "info", queues=("default",), pinned: bool = False,
                adaptive: bool = True) -> Group:
    """``forkq start``: the master and its ``processes`` children, as forkq is deployed; at
    ``warn`` no line is logged per job; ``pinned``: ``cpu_affinity: true``; not ``adaptive``:
    ``adaptive_concurrency: false`` (every thread takes jobs)."""
    name = (f"forkq-{fetch}-{loglevel}{'-pinned' if pinned else ''}"
            f"{'' if adaptive else '-fixed'}-{processes}")
    config = {"redis_url": redis_url, "require": ["compare_jobs"], "concurrency": THREADS,
              "processes": processes, "fetch": fetch, "queues": list(queues),
              "cpu_affinity": True if pinned else "auto", "adaptive_concurrency": adaptive,
              "logfile": os.path.join(workdir, f"{name}-worker.log"), "loglevel": loglevel,
              "metrics": {"port": None}, "data_dir": os.path.join(workdir, "data")}
    path = os.path.join(workdir, f"{name}.yml")
    with open(path, "w") as handle:
        json.dump(config, handle)  # JSON is YAML
    command = [sys.executable, "-m", "forkq.cli", "start", "-c", path]
    return Group(name, [command], environment(redis_url), workdir)


def start_body(redis_url: str, processes: int, total: int, language: str, workdir: str) -> Group:
    """The body alone, in ``python`` (``body_alone.py``) or ``ruby`` (``body_alone.rb``)."""
    script = {"python": [sys.executable, os.path.join(HERE, "body_alone.py")],
              "ruby": ["ruby", os.path.join(HERE, "body_alone.rb")]}[language]
    command = script + [str(total), str(THREADS)]
    return Group(f"{language}-body-{processes}", [command] * processes, environment(redis_url),
                 workdir)


def start_floor(redis_url: str, processes: int, workdir: str) -> Group:
    """``floor_loop.py``: reliable fetch in batches of 10, JSON decoding and the body, alone."""
    command = [sys.executable, os.path.join(HERE, "floor_loop.py"), str(THREADS)]
    return Group(f"python-floor-{processes}", [command] * processes, environment(redis_url),
                 workdir)
