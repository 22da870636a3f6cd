"""Example jobs for the demo: a fast one, a slow one, and one that fails on some orders."""

import time

import forkq


@forkq.job(queue="default")
def greet(name):
    """Say hello: the smallest job there is."""
    return f"hello {name}"


class ResizeImage(forkq.Job):
    """Pretend to resize an image: takes a moment."""

    options = {"queue": "media", "retry": 3}

    def perform(self, image_id, width):
        time.sleep(0.2)


def retry_soon(count, exc):
    """Seconds before retry ``count``: short, so that the demo shows retries succeeding."""
    return 2 * (count + 1)


class ChargeCard(forkq.Job):
    """Declines the same orders on every run of the demo, so that each run shows a failure, a
    retry that succeeds and a job that runs out of retries: orders ending in 1 or 4 on their
    first attempt only, orders ending in 3 on every attempt (dead after its 2 retries)."""

    options = {"queue": "critical", "retry": 2, "backtrace": 5, "retry_in": retry_soon}

    def perform(self, order_id, amount_cents):
        first_attempt = "retry_count" not in self.payload  # set by the first failure
        if order_id % 10 == 3 or (order_id % 10 in (1, 4) and first_attempt):
            raise RuntimeError(f"card declined for order {order_id}")
