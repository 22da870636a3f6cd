"""Settings of the Django tasks comparison (``bench/compare_django.py``): one project, whose
``default`` tasks backend is forkq's, ``django-tasks-rq``'s or ``django-tasks-db``'s as
``BENCH_DJANGO_BACKEND`` says (``forkq``, ``rq``, ``db``), so that every system runs the very
same tasks (``benchtasks.tasks``). ``BENCH_REDIS_URL`` and ``BENCH_DB`` name the private Redis
and the SQLite file of the run.

SQLite as Django's docs advise for concurrent writers: ``transaction_mode: IMMEDIATE`` and a
lock timeout (the file is put in WAL mode once, when the benchmark creates it), the same for
every system. A peer whose package is absent is left out of ``INSTALLED_APPS``.
"""

import os
from importlib.util import find_spec

try:
    import django.tasks  # noqa: F401 (Django 6+)
    TASKS_APPS = []
except ImportError:
    TASKS_APPS = ["django_tasks"]  # the backport, on Django 5.2

PEER_APPS = {"django_rq": "django_rq", "django_tasks_rq": "django_tasks_rq",
             "django_tasks_db": "django_tasks_db"}

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [*TASKS_APPS, *(app for app, module in PEER_APPS.items() if find_spec(module)),
                  "benchtasks"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("BENCH_DB", "bench.sqlite3"),
                         "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"}}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/0")
BACKENDS = {
    "forkq": {"BACKEND": "forkq.contrib.django.ForkqBackend",
              "OPTIONS": {"REDIS_URL": REDIS_URL}},
    "rq": {"BACKEND": "django_tasks_rq.RQBackend"},
    "db": {"BACKEND": "django_tasks_db.DatabaseBackend"},
}
TASKS = {"default": BACKENDS[os.environ.get("BENCH_DJANGO_BACKEND", "forkq")]}
RQ_QUEUES = {"default": {"URL": REDIS_URL}}
LOGGING = {"version": 1, "disable_existing_loggers": False}
