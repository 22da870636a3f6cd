"""Settings of the port of Django's ``tests/tasks`` (``run.py``): Django's test package
``tasks`` is the one installed app, so the worker's Django set-up discovers ``tasks.tasks``.

Three ways to point the tests at ``ForkqBackend``, each on the Redis ``run.py`` started:
- ``HELD``: tasks are pushed to a namespace no worker serves, so they stay ``READY`` (the
  ports of the dummy backend's tests and of ``test_tasks.py``'s default alias);
- ``RUN``: a worker runs them and ``enqueue`` returns once the result is finished (the ports
  of the immediate backend's tests; ``backends.RunBackend``), once (``RETRY: 0``), as Django's
  immediate backend does;
- ``TASKS``: the default settings, both of them under their aliases.
"""

import os

REDIS_URL = os.environ.get("PORT_REDIS_URL", "redis://localhost:6379/0")

HELD = {"BACKEND": "backends.HeldBackend",
        "OPTIONS": {"REDIS_URL": REDIS_URL, "NAMESPACE": "held"}}
RUN = {"BACKEND": "backends.RunBackend", "OPTIONS": {"REDIS_URL": REDIS_URL, "RETRY": 0}}

SECRET_KEY = "port-of-django-tests"
USE_TZ = True
INSTALLED_APPS = ["tasks"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TASKS = {"default": {**HELD, "QUEUES": ["default", "queue_1"]},
         "immediate": {**RUN, "QUEUES": []}}
