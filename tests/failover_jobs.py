"""A job for the failover tests: it records each run in a file, outside the Redis under test,
so that runs survive the failover they are counted across; and the producer that pushes it
across the failover."""

import os
import threading
import time

import redis
from redis.exceptions import RedisClusterException

import forkq


@forkq.job
def note(value, pause=0.0):
    time.sleep(pause)  # a drain slower than the pushes, so that pushed jobs wait in the queue
    with open(os.environ["FAILOVER_RUNS_FILE"], "a") as runs:
        runs.write(f"{value} {time.time():.3f}\n")


class Producer(threading.Thread):
    """Pushes ``count`` ``note`` jobs (``p0``, ``p1``... then ``extra`` arguments) to
    ``queue`` one at a time, as an application would: a push that raised is pushed again after
    a pause; ``acknowledged`` holds those that returned."""

    def __init__(self, count: int, *extra, queue: str = "default") -> None:
        super().__init__(daemon=True)
        self.count = count
        self.extra = extra
        self.queue = queue
        self.acknowledged: list[str] = []
        self.errors = 0

    def run(self) -> None:
        for index in range(self.count):
            while True:
                try:
                    note.set(queue=self.queue).perform_async(f"p{index}", *self.extra)
                    break
                except (redis.RedisError, RedisClusterException):
                    self.errors += 1
                    time.sleep(0.05)
            self.acknowledged.append(f"p{index}")
            time.sleep(0.01)

    def attempts(self) -> int:
        return len(self.acknowledged) + self.errors
