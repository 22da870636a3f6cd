"""Django set-up in a forkq worker, before it imports the modules under ``require:``.

``before_require()`` is registered as a ``forkq.before_require`` entry point (``pyproject.toml``)
for the worker to call before it preloads ``require:``: with ``DJANGO_SETTINGS_MODULE`` in the
environment it runs ``django.setup()``, and does nothing otherwise. Until the worker calls the
entry points, list ``forkq.contrib.django.boot`` first under ``require:`` (it calls ``setup()``).

After the set-up the database connections it opened are closed, so that none is shared by the
worker children forked afterwards: each thread opens its own.
"""

from __future__ import annotations

import os

from forkq.errors import ConfigError


def before_require() -> None:
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
    connections.close_all()
