"""Enqueue ``count`` tasks of one body, one at a time, through the backend the settings name
(for ``plain``: the body's plain forkq job, ``perform_async``); print the rate and this
process's CPU time per task as JSON.

    python enqueue.py forkq incr 2000

The first task is sent before the clock starts, so that connecting (Redis, SQLite) is not
counted. ``django.tasks`` has no bulk enqueue, so none of the systems uses one.
"""

import json
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

import django  # noqa: E402

django.setup()

from benchtasks import jobs, tasks  # noqa: E402


def main(system: str, body: str, count: int) -> None:
    send = jobs.BODIES[body].perform_async if system == "plain" else tasks.BODIES[body].enqueue
    send()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count - 1):
        send()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sent = max(count - 1, 1)
    print(json.dumps({"rate": sent / wall if wall else 0.0, "cpu_us": cpu / sent * 1e6}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
