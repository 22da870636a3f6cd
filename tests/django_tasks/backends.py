"""``ForkqBackend`` as the port of Django's ``tests/tasks`` uses it (``port_settings.py``).

Django's dummy backend keeps ``results`` in memory and has ``clear()``; ``HeldBackend`` lists the
results stored in Redis instead (every ``forkq:result:*`` of its namespace, oldest first) and
clears its namespace. Django's immediate backend runs a task inside ``enqueue``;
``RunBackend.enqueue`` pushes it, then waits until a real worker has finished it and returns
the result read back from Redis.
"""

import os
import sys

from forkq.contrib.django import ForkqBackend

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers import wait_for  # noqa: E402 (tests/helpers.py)

#: seconds a task may take from push to finished result
RUN_TIMEOUT = 30.0


class HeldBackend(ForkqBackend):
    @property
    def results(self) -> list:
        source = self._client().source
        found = [self.get_result(key.rpartition(":")[2])
                 for key in source.redis.scan_iter(source.keys.result("*"))]
        return sorted(found, key=lambda result: result.enqueued_at)

    def clear(self) -> None:
        source = self._client().source
        assert source.keys.namespace, "HeldBackend clears its namespace: give it one"
        for key in source.redis.scan_iter(f"{source.keys.namespace}:*"):
            source.redis.delete(key)


class RunBackend(ForkqBackend):
    def enqueue(self, task, args, kwargs):
        pushed = super().enqueue(task, args, kwargs)
        return self._finished(pushed.id)

    async def aenqueue(self, task, args, kwargs):
        pushed = await super().aenqueue(task, args, kwargs)
        return self._finished(pushed.id)

    def _finished(self, result_id: str):
        def done():
            result = self.get_result(result_id)
            return result if result.is_finished else None

        return wait_for(done, RUN_TIMEOUT, message=f"the worker to finish {result_id}")
