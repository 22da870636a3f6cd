"""Settings of the test project: sqlite, forkq's tasks backend, the queued email backend.

The test suite passes the Redis URL, the database file and the SMTP port in the environment
(``SHOP_REDIS_URL``, ``SHOP_DB``, ``SHOP_SMTP_PORT``), to the test process and to the worker.
"""

import os

try:
    import django.tasks  # noqa: F401 (Django 6+)
    TASKS_APPS = []
except ImportError:
    TASKS_APPS = ["django_tasks"]  # the backport, on Django 5.2

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", *TASKS_APPS, "shop"]
ROOT_URLCONF = "project.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("SHOP_DB", "shop.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

REDIS_URL = os.environ.get("SHOP_REDIS_URL", "redis://localhost:6379/0")
TASKS = {
    "default": {"BACKEND": "forkq.contrib.django.ForkqBackend",
                "QUEUES": ["default", "emails"],
                "OPTIONS": {"REDIS_URL": REDIS_URL, "RESULT_TTL": 600, "RETRY": 0}},
    "retrying": {"BACKEND": "forkq.contrib.django.ForkqBackend",
                 "QUEUES": ["default"],
                 "OPTIONS": {"REDIS_URL": REDIS_URL, "RETRY": 1}},
    "patient": {"BACKEND": "forkq.contrib.django.ForkqBackend",
                "QUEUES": ["default"],
                "OPTIONS": {"REDIS_URL": REDIS_URL, "RETRY": True}},
}

FORKQ_EMAIL_QUEUE = "emails"
SMTP_PORT = int(os.environ.get("SHOP_SMTP_PORT", "25"))
try:
    from django.core.mail import mailers  # noqa: F401 (Django 6.1+)
    MAILERS = {"default": {"BACKEND": "forkq.contrib.django.mail.EmailBackend",
                           "OPTIONS": {"mailer": "smtp"}},
               "smtp": {"OPTIONS": {"host": "127.0.0.1", "port": SMTP_PORT}}}
except ImportError:
    EMAIL_BACKEND = "forkq.contrib.django.mail.EmailBackend"
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = SMTP_PORT
