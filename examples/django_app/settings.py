"""Settings of the Django example: no database; one view enqueues a forkq job.

From the repository root, with the workers running (``forkq start -r examples.welcome -P 1``):

    python -m django runserver --settings examples.django_app.settings
    curl -d email=ann@example.com http://127.0.0.1:8000/signup      # {"jid": "..."}
    curl http://127.0.0.1:8000/welcomed                              # ["ann@example.com"]
    open http://127.0.0.1:8000/forkq/

No ``forkq.configure`` call: the app finds Redis as the workers do (``REDIS_URL``, else
``forkq.yml``, else the embedded server that ``forkq start`` runs under ``./.forkq``). A Redis
URL kept in Django's settings would be given in an ``AppConfig.ready()``; see
docs/getting-started.md. For Django's own tasks framework, see docs/django.md.
"""

SECRET_KEY = "example-only"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
ROOT_URLCONF = "examples.django_app.urls"
INSTALLED_APPS = ["forkq.contrib.django"]  # its system checks (manage.py check)
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
DATABASES = {}
USE_TZ = True
