"""Example jobs for the demo: a fast one, a slow one, and one that fails now and then."""

import random
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


@forkq.job(queue="critical", retry=2, backtrace=5, retry_in=retry_soon)
def charge_card(order_id, amount_cents):
    """Fails one time in three, to show retries in the log."""
    if random.random() < 0.33:
        raise RuntimeError(f"card declined for order {order_id}")
