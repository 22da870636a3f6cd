"""The plain forkq job that ``bench_django.py`` sets beside the Django task ``shop.tasks.add``."""

import forkq


@forkq.job
def add(a, b):
    return a + b
