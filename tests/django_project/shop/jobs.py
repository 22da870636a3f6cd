"""Plain forkq jobs of the test project that take model instances (by reference)."""

import forkq
from forkq.contrib.django.models import ModelArgs


class ShipOrder(ModelArgs, forkq.Job):
    options = {"queue": "default", "retry": 3}

    def perform(self, order, carrier):
        forkq.redis().rpush("shop:shipped", f"{order.item}:{carrier}")


class TouchDatabase(forkq.Job):
    """A plain forkq job (not a task) that uses the ORM: records whether its thread's database
    connection was open when it started, then opens it with a query."""

    def perform(self):
        from django.db import connection

        from shop.models import Order

        forkq.redis().rpush("shop:connection_at_start",
                            "open" if connection.connection is not None else "closed")
        Order.objects.count()
