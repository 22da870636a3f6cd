"""The tasks framework this process has: ``django.tasks`` (Django 6+) or the ``django_tasks``
backport (Python 3.11 and Django 5.2, with ``"django_tasks"`` in ``INSTALLED_APPS``)."""

try:
    from django.tasks import (DEFAULT_TASK_QUEUE_NAME, TaskContext, TaskResult,
                              TaskResultStatus, task)
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import (InvalidTask, InvalidTaskBackend,
                                         TaskResultDoesNotExist)
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
except ImportError:
    from django_tasks import (DEFAULT_TASK_QUEUE_NAME, TaskContext, TaskResult,
                              TaskResultStatus, task)
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json

__all__ = ["BaseTaskBackend", "DEFAULT_TASK_QUEUE_NAME", "InvalidTask", "InvalidTaskBackend",
           "Task", "TaskContext", "TaskError", "TaskResult", "TaskResultDoesNotExist",
           "TaskResultStatus", "normalize_json", "task", "task_enqueued", "task_finished",
           "task_started"]
