"""Django integration: the ``django.tasks`` backend (``ForkqBackend``), enqueue after commit,
a queued email backend (``forkq.contrib.django.mail``), model references for forkq jobs
(``forkq.contrib.django.models``) and the worker's Django set-up (``setup``, ``boot``).
The core never imports this package.

Names are imported on first use, so that ``forkq.contrib.django.setup`` (an entry point every
worker loads) imports without Django installed.
"""

__all__ = ["ForkqBackend", "enqueue_on_commit", "worker_queues"]

_HOMES = {"ForkqBackend": "backend", "worker_queues": "backend",
          "enqueue_on_commit": "commit"}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'forkq.contrib.django' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
