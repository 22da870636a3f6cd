"""The same two bodies as plain forkq jobs (no ``django.tasks``), run by the same Django-set-up
worker: what a Django task costs above a plain job."""

import forkq

from .models import Row
from .tasks import COUNTER, client


@forkq.job
def incr():
    client.incr(COUNTER)


@forkq.job
def write_row():
    Row.objects.create(label="row")


BODIES = {"incr": incr, "orm": write_row}
