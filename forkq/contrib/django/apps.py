"""The Django app of forkq's integration: ``"forkq.contrib.django"`` in ``INSTALLED_APPS``.

It registers the system check of the ``ForkqBackend``s in ``TASKS``, so that ``manage.py
check`` reports bad ``OPTIONS`` (``forkq.E001``) even when nothing imported the tasks
framework's own check (which would report them too: then this one stays silent).
"""

from django.apps import AppConfig
from django.core import checks

#: modules whose registered check already runs every backend's ``check()``
FRAMEWORK_CHECKS = ("django.tasks", "django.core.checks.tasks", "django_tasks")


class ForkqConfig(AppConfig):
    name = "forkq.contrib.django"
    label = "forkq"
    verbose_name = "forkq"

    def ready(self) -> None:
        checks.register(check_backends)


def check_backends(app_configs=None, **kwargs) -> list:
    """Every ``ForkqBackend``'s own check, unless the framework's check runs them."""
    if any(getattr(check, "__module__", "").startswith(FRAMEWORK_CHECKS)
           for check in checks.registry.registry.get_checks()):
        return []
    from django.conf import settings

    try:
        from django.tasks import task_backends
    except ImportError:
        from django_tasks import task_backends  # the backport, on Django 5.2

    found = []
    for alias, definition in getattr(settings, "TASKS", {}).items():
        if definition.get("BACKEND", "").startswith("forkq.contrib.django"):
            found.extend(task_backends[alias].check())
    return found
