"""The example web apps (``examples/flask_app``, ``fastapi_app``, ``django_app``), each driven
by its framework's own test client: the signup view enqueues a job, a real worker process runs
it, and forkq's web UI answers under the app's mount prefix, with every link, its CSRF cookie
and a state-changing form staying under that prefix.

Django's settings are global to a process and ``tests/test_django.py`` sets up another project
in the test process, so the Django example runs in a process of its own (``drive_django``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

import forkq
from helpers import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
if ROOT not in sys.path:  # the examples are a package of the repository, not installed
    sys.path.insert(0, ROOT)
PREFIX = "/forkq"
#: a queue no worker of this module listens to, so its jobs stay for the UI to clear
PARKED = "parked"

pytestmark = pytest.mark.slow


@forkq.job(queue=PARKED)
def parked():
    """Never runs: the UI's form clears its queue."""


@pytest.fixture(scope="module")
def worker(redis_server, tmp_path_factory):
    """``python -m forkq.worker`` on the examples' job module and the test Redis."""
    directory = tmp_path_factory.mktemp("examples")
    (directory / "forkq.yml").write_text(
        f"require: [examples.welcome]\nqueues: [default]\nconcurrency: 2\npoll_interval: 0.1\n"
        f"heartbeat_interval: 0.5\ndata_dir: {directory / 'data'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKQ_")}
    env.update(REDIS_URL=redis_server.url, PYTHONPATH=ROOT)
    with open(directory / "worker.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "forkq.worker"], cwd=str(directory),
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0, (directory / "worker.log").read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def app_env(redis, redis_url, monkeypatch, worker):
    """The app side in this process: its pushes and its mounted UI on the test Redis."""
    monkeypatch.setenv("REDIS_URL", redis_url)  # read by forkq.web.app at its first request
    return redis


class Driver:
    """What the checks need of an app: ``get(path)`` and ``post(path, form)`` through its test
    client, each returning ``(status, headers as a lower-case dict, text)``."""

    def __init__(self, get, post) -> None:
        self.get, self.post = get, post

    def json(self, path: str):
        status, _, text = self.get(path)
        assert status == 200, text
        return json.loads(text)


def exercise(app: Driver, signup_jid: str, redis) -> None:
    """The job enqueued by the signup view runs; the mounted UI serves its pages."""
    assert len(signup_jid) == 24
    wait_for(lambda: app.json("/welcomed") == ["ann@example.com"], 15,
             message="the worker to run the job the view enqueued")
    check_links(app)
    check_a_form_under_the_prefix(app, redis)


def check_links(app: Driver) -> None:
    status, headers, page = app.get(PREFIX + "/")
    assert status == 200 and headers["content-type"].startswith("text/html"), page
    links = set(re.findall(r'(?:href|src|action)="(/[^"]*)"', page))
    assert links and all(link.startswith(PREFIX + "/") for link in links), sorted(links)
    for link in sorted(links):
        status, _, text = app.get(link.replace("&amp;", "&"))
        assert status == 200, f"{link}: {status} {text[:200]}"


def check_a_form_under_the_prefix(app: Driver, redis) -> None:
    """A POST through the mount: the UI's CSRF cookie came back, its form clears a queue."""
    parked.perform_async()
    status, _, page = app.get(f"{PREFIX}/queues/{PARKED}")
    assert status == 200 and redis.llen(f"queue:{PARKED}") == 1
    form = re.search(rf'<form method="post" action="({PREFIX}/queues/{PARKED})".*?'
                     r'name="csrf" value="([^"]+)"', page, re.S)
    assert form, page
    status, headers, text = app.post(form.group(1), {"csrf": form.group(2), "action": "clear"})
    assert status == 303 and headers["location"].startswith(PREFIX + "/queues"), text
    assert redis.llen(f"queue:{PARKED}") == 0


def test_the_flask_example(app_env):
    from examples.flask_app.app import app

    client = app.test_client()  # Host: localhost, which the UI serves without a login

    def respond(response):
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, \
            response.get_data(as_text=True)

    driver = Driver(lambda path: respond(client.get(path)),
                    lambda path, form: respond(client.post(path, data=form)))
    response = client.post("/signup", data={"email": "ann@example.com"})
    assert response.status_code == 202
    exercise(driver, response.get_json()["jid"], app_env)


def test_the_fastapi_example(app_env):
    from fastapi.testclient import TestClient

    from examples.fastapi_app.app import app

    def respond(response):
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, \
            response.text

    with TestClient(app, base_url="http://localhost") as client:
        driver = Driver(lambda path: respond(client.get(path)),
                        lambda path, form: respond(client.post(path, data=form,
                                                               follow_redirects=False)))
        response = client.post("/signup", json={"email": "ann@example.com"})
        assert response.status_code == 202
        exercise(driver, response.json()["jid"], app_env)


def test_the_django_example(app_env, redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKQ_")}
    env.update(REDIS_URL=redis_url, PYTHONPATH=os.pathsep.join([ROOT, TESTS]),
               DJANGO_SETTINGS_MODULE="examples.django_app.settings")
    result = subprocess.run([sys.executable, "-c", "import test_examples; "
                             "test_examples.drive_django()"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "django example: ok"


def drive_django() -> None:
    """The Django example through Django's test client, in a process of its own."""
    from urllib.parse import urlencode

    import django
    import redis as redis_py
    from django.test import Client

    django.setup()
    # CSRF enforced as in a browser: the UI's forms must pass without Django's token.
    client = Client(enforce_csrf_checks=True, HTTP_HOST="localhost")

    def respond(response):
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, \
            response.content.decode()

    # Encoded as a browser sends the UI's forms (the test client's default is multipart).
    driver = Driver(lambda path: respond(client.get(path)),
                    lambda path, form: respond(client.post(
                        path, urlencode(form), "application/x-www-form-urlencoded")))
    # As the settings' curl sends it: a form post, no cookie, CSRF checks enforced.
    signup = client.post("/signup", "email=ann%40example.com",
                         "application/x-www-form-urlencoded")
    assert signup.status_code == 202, signup.content
    redis = redis_py.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    exercise(driver, signup.json()["jid"], redis)
    assert client.cookies["forkq_csrf"]["path"] == PREFIX
    print("django example: ok")


def test_the_demo_declines_the_same_orders_on_every_run():
    from examples import jobs
    from forkq.testing import run_payload

    def declined(order: int, **failed) -> bool:
        payload = {"class": jobs.ChargeCard.wire_name(), "args": [order, 1999],
                   "jid": "d" * 24, **failed}
        try:
            run_payload(payload)
        except RuntimeError as exc:
            assert str(exc) == f"card declined for order {order}"
            return True
        return False

    first = [order for order in range(100, 106) if declined(order)]
    retried = [order for order in range(100, 106) if declined(order, retry_count=0)]
    assert (first, retried) == ([101, 103, 104], [103])
    assert declined(103, retry_count=1)  # and so on to the dead set
