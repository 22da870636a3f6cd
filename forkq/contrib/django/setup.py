"""Django set-up in a forkq worker, before it imports the modules under ``require:``.

``before_require()`` is registered as a ``forkq.before_require`` entry point (``pyproject.toml``),
which the worker calls before it preloads ``require:`` (``worker.run_before_require_hooks``):
with ``DJANGO_SETTINGS_MODULE`` in the environment it runs ``django.setup()``, and does nothing
otherwise. Listing ``forkq.contrib.django.boot`` first under ``require:`` makes the set-up
required: it calls ``setup()``, which fails, naming the fix, without ``DJANGO_SETTINGS_MODULE``.

The set-up then defines the project's tasks, as Celery's ``autodiscover_tasks`` does: it imports
the ``tasks`` module of every installed app that has one (``discover_tasks``), and forkq's own
mail task when forkq's email backend is configured (``EMAIL_BACKEND`` or a ``MAILERS`` entry).
Only modules the settings name are imported; a payload never makes the worker import one.

After the set-up the database connections it opened are closed, so that none is shared by the
worker children forked afterwards: each thread opens its own. The set-up also registers two
server middlewares in forkq's hooks (``forkq.hooks.registry``): one closes stale connections
around every job, as Django's request cycle does around a request; the other is the tasks'
run protocol (results and signals, ``jobs.task_protocol``).
"""

from __future__ import annotations

import os

from ...errors import ConfigError
from ...hooks import registry


def before_require() -> None:
    """The entry point: set Django up when this process has settings, else nothing."""
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        setup()


def setup() -> None:
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ConfigError("forkq.contrib.django: DJANGO_SETTINGS_MODULE is not set; export it "
                          "(e.g. DJANGO_SETTINGS_MODULE=mysite.settings) before starting the "
                          "worker")
    import django
    from django.apps import apps
    from django.db import connections

    if not apps.ready:
        django.setup()
    discover_tasks()
    connections.close_all()
    from .jobs import task_protocol

    for middleware in (close_connections_around, task_protocol):
        if middleware not in registry.middleware.server:
            registry.middleware.add_server(middleware)


#: the email backend whose task the worker defines when the settings use it
MAIL_BACKEND = "forkq.contrib.django.mail.EmailBackend"


def discover_tasks() -> list[str]:
    """Import the installed apps' ``tasks`` modules, and ``forkq.contrib.django.mail`` when
    the settings send mail through it; the modules imported."""
    import importlib

    from django.apps import apps
    from django.utils.module_loading import module_has_submodule

    found = [f"{config.name}.tasks" for config in apps.get_app_configs()
             if module_has_submodule(config.module, "tasks")]
    if _sends_mail_through_tasks():
        found.append("forkq.contrib.django.mail")
    for name in found:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ConfigError(f"forkq.contrib.django: could not import the tasks module "
                              f"{name!r}: {type(exc).__name__}: {exc}") from exc
    return found


def _sends_mail_through_tasks() -> bool:
    from django.conf import settings

    mailers = getattr(settings, "MAILERS", None) or {}
    backends = [getattr(settings, "EMAIL_BACKEND", None)]
    backends += [entry.get("BACKEND") for entry in mailers.values() if isinstance(entry, dict)]
    return MAIL_BACKEND in backends


def close_connections_around(job, payload, queue, call_next):
    """Server middleware: close the thread's stale or broken database connections before and
    after each job, as Django's request cycle does around a request (``CONN_MAX_AGE``)."""
    from django.db import close_old_connections

    close_old_connections()
    try:
        return call_next()
    finally:
        close_old_connections()
