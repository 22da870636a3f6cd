"""Run Django's own ``tests/tasks`` against ``ForkqBackend``, with a real Redis and worker.

    python tests/django_tasks/run.py [SOURCE] [--require MODULE ...]

``SOURCE`` is a Django source distribution (``.tar.gz``) or an unpacked one; without it, the
source distribution of the installed Django version is fetched with ``pip download``. Its
``tests/tasks`` package is copied to a scratch directory as the package ``tasks`` (Django's
test modules import each other as ``tasks.*``), a Redis is started (forkq's embedded one) and a
worker (``python -m forkq.worker``) whose ``forkq.yml`` lists no task module: the Django set-up
discovers ``tasks.tasks``. ``--require`` adds modules to the worker's ``require:`` (for
measuring a forkq that cannot discover tasks). The tests are ``port.py``'s, run by Django's test
runner. Prints the counts; exits 1 when a test failed or errored.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, ROOT]  # this checkout's forkq, in this process as in the worker


def django_tests(source: str | None, scratch: str) -> str:
    """The directory holding Django's ``tests/tasks`` (fetched or unpacked into ``scratch``)."""
    if source is None:
        import django

        version = django.get_version()
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", f"django=={version}", "-d", scratch],
                       check=True)
        (source,) = glob.glob(os.path.join(scratch, "[Dd]jango-*.tar.gz"))
    if os.path.isdir(source):
        found = glob.glob(os.path.join(source, "tests", "tasks")) or [source]
        return found[0]
    with tarfile.open(source) as archive:
        members = [m for m in archive.getmembers() if "/tests/tasks/" in m.name]
        archive.extractall(scratch, members=members, filter="data")
    (found,) = glob.glob(os.path.join(scratch, "*", "tests", "tasks"))
    return found


def start_worker(scratch: str, redis_url: str, env: dict, require: list[str]):
    config = {"redis_url": redis_url, "queues": ["default", "queue_1"], "concurrency": 2,
              "poll_interval": 0.2, "timeout": 5, "data_dir": os.path.join(scratch, "data")}
    if require:
        config["require"] = require
    path = os.path.join(scratch, "forkq.yml")
    with open(path, "w") as file:
        json.dump(config, file)
    log = open(os.path.join(scratch, "worker.log"), "wb")
    return subprocess.Popen([sys.executable, "-m", "forkq.worker", "-c", path], cwd=scratch,
                            env=env, stdout=log, stderr=subprocess.STDOUT), log


def run_tests() -> "unittest.TestResult":
    import django
    from django.test.runner import DiscoverRunner

    django.setup()

    class Counting(DiscoverRunner):
        def run_suite(self, suite, **kwargs):
            self.result = super().run_suite(suite, **kwargs)
            return self.result

    runner = Counting(verbosity=2, interactive=False)
    runner.run_tests(["port"])
    return runner.result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", help="Django's source distribution or tree")
    parser.add_argument("--require", action="append", default=[],
                        help="a module for the worker's require: (repeatable)")
    options = parser.parse_args(argv)
    from forkq.connection.embedded import EmbeddedRedis

    scratch = tempfile.mkdtemp(prefix="forkq-django-tasks-")
    shutil.copytree(django_tests(options.source, scratch), os.path.join(scratch, "tasks"))
    server = EmbeddedRedis(os.path.join(scratch, "redis")).start()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DJANGO_SETTINGS_MODULE="port_settings", PORT_REDIS_URL=server.url,
               PYTHONPATH=os.pathsep.join([scratch, HERE, ROOT]))
    os.environ.update(env)
    sys.path.insert(0, scratch)
    worker, log = start_worker(scratch, server.url, env, options.require)
    try:
        result = run_tests()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        log.close()
        server.stop()
    code = report(result, os.path.join(scratch, "worker.log"))
    if code == 0:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"kept for inspection: {scratch}")
    return code


def report(result, worker_log: str) -> int:
    """Print the counts (a test whose subtests fail counts once); 1 when any failed."""
    def case(test):
        return getattr(test, "test_case", test).id()  # a subtest's test

    failed = {case(test) for test, _ in result.failures + result.errors}
    passed = result.testsRun - len(failed) - len(result.skipped)
    print(f"Django tests/tasks on ForkqBackend: {result.testsRun} tests, {passed} passed, "
          f"{len(failed)} failed, {len(result.skipped)} skipped (the reasons: "
          f"tests/django_tasks/port.py SKIPS)")
    if failed:
        with open(worker_log, errors="replace") as file:
            print("--- the worker's log (last 40 lines)\n" + "".join(file.readlines()[-40:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
