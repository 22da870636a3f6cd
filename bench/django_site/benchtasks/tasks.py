"""The two task bodies of the comparison, the same for every backend: one ``INCR`` through a
module-level redis-py client (a pool, as applications hold one), and one ORM write of a row."""

import redis
from django.conf import settings

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task  # the backport, on Django 5.2

from .models import Row

#: the counter the ``incr`` task increments
COUNTER = "bench:counter"

client = redis.Redis.from_url(settings.REDIS_URL)


@task
def incr():
    client.incr(COUNTER)


@task
def write_row():
    Row.objects.create(label="row")


BODIES = {"incr": incr, "orm": write_row}
