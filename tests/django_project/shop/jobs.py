"""Plain forkq jobs of the test project that take model instances (by reference)."""

import forkq
from forkq.contrib.django.models import ModelArgs


class ShipOrder(ModelArgs, forkq.Job):
    options = {"queue": "default", "retry": 3}

    def perform(self, order, carrier):
        forkq.redis().rpush("shop:shipped", f"{order.item}:{carrier}")
