"""Django set-up for a forkq worker: list it first under ``require:``.

    require: [forkq.contrib.django.boot, shop.tasks]

Importing it runs ``django.setup()`` with ``DJANGO_SETTINGS_MODULE`` (the tasks' modules need
the app registry and ``TASKS``), then closes the database connections it opened, so none is
shared by the worker children forked afterwards: each thread opens its own.
"""

from __future__ import annotations

import os

from forkq.errors import ConfigError


def setup() -> None:
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ConfigError("forkq.contrib.django.boot: DJANGO_SETTINGS_MODULE is not set; "
                          "export it (e.g. DJANGO_SETTINGS_MODULE=mysite.settings) before "
                          "starting the worker")
    import django
    from django.db import connections

    django.setup()
    connections.close_all()


setup()
