"""The ceiling of the side-by-side benchmark: 10 threads doing only the job body (one INCR
through the module-level client of ``compare_jobs``), with no job system around them.

    python bench/body_alone.py TOTAL [THREADS]

Each thread blocks on ``bench:go`` (one element per thread, pushed by the harness once every
thread of every process is blocked), then runs the body until the counter reaches TOTAL.
"""

import sys

from compare_jobs import GO, REDIS, incr, run_threads


def drain(total: int) -> None:
    REDIS.blpop(GO)
    while incr(total) < total:
        pass


def main() -> None:
    total = int(sys.argv[1])
    run_threads(lambda index: drain(total), int(sys.argv[2]) if len(sys.argv) > 2 else 10)


if __name__ == "__main__":
    main()
