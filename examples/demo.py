"""The demo: start forkq on its embedded Redis, enqueue the example jobs, watch them run.

    python examples/demo.py          # about 15 seconds, then a clean stop

The log of the supervisor and its children streams to this terminal: a line per job start
and finish, failures with their tracebacks, retries a few seconds later.
"""

import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import forkq  # noqa: E402
from forkq import api
from forkq.connection import embedded  # noqa: E402
from examples import jobs  # noqa: E402

DATA_DIR = os.path.join(ROOT, ".forkq")
#: seconds the demo lets the jobs run before stopping forkq
RUN_FOR = 12.0


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("demo: forkq did not come up; see the log above")
        time.sleep(0.1)


def enqueue_examples():
    for name in ("Ada", "Grace", "Linus", "Guido"):
        jobs.greet.perform_async(name)
    jobs.ResizeImage.perform_bulk([[image, 640] for image in range(1, 6)])
    for order in range(100, 106):
        jobs.ChargeCard.perform_async(order, 1999)
    jobs.greet.perform_in(3, "the future")


def main():
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("REDIS_URL", None)
    master = subprocess.Popen([sys.executable, "-m", "forkq.cli", "start", "-c",
                               os.path.join(ROOT, "examples", "forkq.yml")], cwd=ROOT, env=env)
    try:
        wait_for(lambda: embedded.is_running(DATA_DIR))
        forkq.configure(data_dir=DATA_DIR)
        admin = api.default()
        wait_for(lambda: admin.stats()["processes"] >= 1)
        enqueue_examples()
        time.sleep(RUN_FOR)
        stats = admin.stats()
        print(f"\ndemo: processed {stats['processed']}, failed {stats['failed']}, "
              f"waiting to retry {stats['retries']}, dead {stats['dead']}; stopping forkq\n",
              flush=True)
    finally:
        master.send_signal(signal.SIGTERM)
        master.wait(60)
    return master.returncode


if __name__ == "__main__":
    sys.exit(main())
