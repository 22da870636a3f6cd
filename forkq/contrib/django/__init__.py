"""Django integration: the ``django.tasks`` backend (``ForkqBackend``), enqueue after commit,
a queued email backend (``forkq.contrib.django.mail``) and the worker's Django set-up
(``forkq.contrib.django.boot``). The core never imports this package."""

from .backend import ForkqBackend, queue_for, worker_queues
from .commit import enqueue_on_commit

__all__ = ["ForkqBackend", "enqueue_on_commit", "queue_for", "worker_queues"]
