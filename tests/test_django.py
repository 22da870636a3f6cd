"""The Django tasks backend with a real project (``tests/django_project``), a real Redis and real
``python -m forkq.worker`` processes: enqueue from a view and from code, run, read results
back, defer, priority, retries, failures with tracebacks, async tasks, signals, enqueue after
commit, and mail delivered to a real SMTP server.

Runs on Django 6 (``django.tasks``) under Python 3.12+ and on the ``django_tasks`` backport
under Python 3.11; ``tests/run`` runs it under both.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from harness import free_port
from helpers import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.path.join(ROOT, "tests", "django_project")
#: the tasks (shop.tasks, forkq's mail task) are not listed: the Django set-up discovers them
WORKER_REQUIRE = ["forkq.contrib.django.boot", "shop.jobs"]

pytestmark = pytest.mark.slow


#: the environment this process's Django was set up with: ``django.setup()`` reads the
#: settings once, so every module that uses the project (``test_cluster_django.py`` too)
#: must give its workers the same database file
_SET_UP: dict[str, str] = {}


@pytest.fixture(scope="module")
def django_env(redis_server, tmp_path_factory):
    """The project set up in this process, on the test Redis and a fresh sqlite file (the
    one of the process's first set-up, for the modules after it)."""
    env = _SET_UP or {"DJANGO_SETTINGS_MODULE": "project.settings",
                      "SHOP_REDIS_URL": redis_server.url,
                      "SHOP_DB": str(tmp_path_factory.mktemp("shop") / "shop.sqlite3")}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    if not _SET_UP:
        sys.path.insert(0, PROJECT)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", run_syncdb=True, verbosity=0)
        _SET_UP.update(env)
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def start_worker(django_env, redis, redis_url, tmp_path):
    """Start ``python -m forkq.worker`` on the project (``settings``: more forkq.yml keys); each
    is stopped with TERM at teardown."""
    from forkq.contrib.django import worker_queues

    running = []

    def start(concurrency=2, settings=None, **extra_env):
        config = {"redis_url": redis_url, "queues": worker_queues(["default", "emails"]),
                  "require": WORKER_REQUIRE, "concurrency": concurrency, "poll_interval": 0.2,
                  "heartbeat_interval": 0.5, "timeout": 5, "data_dir": str(tmp_path / "data"),
                  **(settings or {})}
        config = {key: value for key, value in config.items() if value is not None}
        path = tmp_path / f"forkq-{len(running)}.yml"
        path.write_text(json.dumps(config))
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(django_env, PYTHONPATH=os.pathsep.join([ROOT, PROJECT]), **extra_env)
        log = open(tmp_path / f"worker-{len(running)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "forkq.worker", "-c", str(path)],
                                cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
        running.append((proc, log))
        return proc

    yield start
    for proc, log in running:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
        assert code == 0, open(log.name).read()


def finished(task_result, timeout=15.0):
    """Wait until the result in Redis is finished; return it refreshed."""
    def done():
        task_result.refresh()
        return task_result.is_finished

    wait_for(done, timeout, message=f"result {task_result.id} to finish")
    return task_result


def test_a_view_enqueues_and_a_worker_runs_the_task(django_env, redis, start_worker):
    from django.test import Client

    from forkq.contrib.django.compat import TaskResultStatus, task_enqueued
    from shop.models import Order
    from shop.tasks import receipt

    enqueued = []

    def on_enqueued(sender, task_result, **kwargs):
        enqueued.append(task_result.id)

    task_enqueued.connect(on_enqueued)
    order = Order.objects.create(item="teapot")
    try:
        response = Client().post(f"/orders/{order.pk}/receipt")
    finally:
        task_enqueued.disconnect(on_enqueued)
    body = response.json()
    assert body["status"] == "READY" and enqueued == [body["id"]] and len(body["id"]) == 24
    assert redis.llen("queue:default") == 1
    start_worker()
    result = finished(receipt.get_result(body["id"]))
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "teapot"
    assert result.attempts == 1 and len(result.worker_ids) == 1
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert Client().get(f"/results/{body['id']}").json() == {
        "status": "SUCCESSFUL", "value": "teapot", "errors": []}
    assert redis.lrange("shop:signals", 0, -1) == ["started:receipt:RUNNING",
                                                   "finished:receipt:SUCCESSFUL"]


@pytest.mark.fault
def test_task_started_is_sent_once_redis_has_the_run_even_while_writes_are_held(
        django_env, redis, start_worker):
    """Django's order of events: a receiver of ``task_started`` reading the result on a
    connection of its own sees ``RUNNING``, even when Redis holds writes back as a failover
    does (``CLIENT PAUSE WRITE``) as the run starts, and serves reads meanwhile: the signal
    waits for Redis' answer to the ``RUNNING`` write, not only for the write to be sent."""
    from forkq.contrib.django.compat import TaskResultStatus
    from shop.tasks import watched

    result = watched.enqueue()
    start_worker(concurrency=1, SHOP_PAUSE_WATCHED="1")
    assert finished(result).status == TaskResultStatus.SUCCESSFUL
    assert redis.lrange("shop:seen", 0, -1) == ["running"]


def test_enqueue_on_commit_waits_for_the_commit(django_env, redis, start_worker):
    from django.db import transaction
    from django.test import Client

    from forkq.contrib.django import enqueue_on_commit
    from shop.models import Order
    from shop.tasks import receipt

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        with transaction.atomic():
            order = Order.objects.create(item="never")
            enqueue_on_commit(receipt, order.pk)
            raise Rollback
    assert redis.llen("queue:default") == 0
    with transaction.atomic():
        order = Order.objects.create(item="kettle")
        enqueue_on_commit(receipt, order.pk)
        assert redis.llen("queue:default") == 0, "pushed before the commit"
    assert redis.llen("queue:default") == 1
    Client().post("/orders", {"item": "cup"})
    jids = [json.loads(text)["jid"] for text in redis.lrange("queue:default", 0, -1)]
    assert len(jids) == 2
    start_worker()
    values = wait_for(lambda: _values(receipt, jids), 15, message="both receipts")
    assert sorted(values) == ["cup", "kettle"]


def _values(task, jids):
    found = [task.get_result(jid) for jid in jids]
    return [r.return_value for r in found] if all(r.is_finished for r in found) else None


def test_context_async_tasks_and_failures(django_env, redis, start_worker):
    from forkq.contrib.django.compat import TaskResultStatus
    from shop.tasks import explode, returns_a_set, slow_double, whoami

    context = whoami.enqueue("me")
    doubled = slow_double.enqueue(21)
    failed = explode.enqueue("boom")
    unstorable = returns_a_set.enqueue()
    start_worker()
    assert finished(context).return_value == {"attempt": 1, "id": context.id, "label": "me"}
    assert finished(doubled).return_value == 42
    failed = finished(failed)
    assert failed.status == TaskResultStatus.FAILED and failed.attempts == 1
    (error,) = failed.errors
    assert error.exception_class is ValueError
    assert "raise ValueError(message)" in error.traceback and "ValueError: boom" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        failed.return_value
    unstorable = finished(unstorable)
    assert unstorable.status == TaskResultStatus.FAILED
    assert "returned a builtins.set" in unstorable.errors[0].traceback
    # The result is written before the job goes on to the dead set, in the same thread
    wait_for(lambda: redis.zcard("dead"), 15, message="RETRY: 0 to send the failed task to the "
                                                      "dead set")
    assert redis.zcard("dead") == 1, "only the task that raised"


def test_a_task_is_shown_under_its_own_name(django_env, redis, start_worker, tmp_path):
    """As Sidekiq shows an ActiveJob job under its ``wrapped`` class: the log's ``class=``, the
    admin API (the web UI's source) and the per-class metrics name the task, not RunTask."""
    from forkq.api import Api
    from forkq.api.jobmetrics import top_jobs
    from forkq.keys import Keys
    from shop.tasks import add, explode

    explode.enqueue("shown")
    pushed = add.enqueue(1, 1)
    (queued,) = [e for e in Api(redis).queue("default").jobs() if e.jid == pushed.id]
    assert queued.display_class == "shop.tasks.add"
    start_worker()
    finished(pushed)
    (dead,) = wait_for(lambda: Api(redis).dead.page(), 15, message="the dead task")
    assert dead.display_class == "shop.tasks.explode"
    names = wait_for(lambda: {m.name for m in top_jobs(redis, Keys(), time.time())} or None,
                     15, message="the job metrics flush")
    assert names == {"shop.tasks.add", "shop.tasks.explode"}
    log = (tmp_path / "worker-0.log").read_text()
    assert f"class=shop.tasks.add jid={pushed.id}" in log and "class=forkq.contrib" not in log


def _shell(django_env, command):
    """``command`` in a fresh process of the project, after ``django.setup()``; its output."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(django_env, PYTHONPATH=os.pathsep.join([ROOT, PROJECT]))
    shell = subprocess.run([sys.executable, "-c", f"import django; django.setup()\n{command}"],
                           cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60)
    assert shell.returncode == 0, shell.stderr
    return shell.stdout.split()


def test_a_task_with_a_priority_runs_on_a_default_worker(django_env, redis, start_worker):
    """Enqueued from the shell with a priority, run by a worker whose forkq.yml names neither
    queues nor the task's module, read back by a process that never imported the module."""
    jid = _shell(django_env, "from shop.tasks import add; "
                             "print(add.using(priority=3).enqueue(40, 2).id)")[-1]
    assert redis.llen("forkq:level:3:default") == 1
    start_worker(settings={"queues": None})
    wait_for(lambda: redis.get("stat:processed") == "1", 15, message="the task's run")
    tasks_package = "django.tasks" if _django6() else "django_tasks"
    seen = _shell(django_env, (
        f"import sys; from {tasks_package} import task_backends\n"
        f"r = task_backends['default'].get_result({jid!r})\n"
        "print(r.status, r.return_value, r.task.module_path, r.task.name, r.task.priority, "
        "'shop.tasks' in sys.modules)"))
    assert seen == ["SUCCESSFUL", "42", "shop.tasks.add", "add", "3", "False"]


def _django6():
    import django

    return django.VERSION >= (6,)


def aenqueued_and_awaited(task, *args):
    """``task.aenqueue(*args)``, then its ``aget_result`` until it finished, on one loop."""
    from forkq import aio

    async def scenario():
        try:
            pushed = await task.aenqueue(*args)
            while not (await task.aget_result(pushed.id)).is_finished:
                await asyncio.sleep(0.05)
            return await task.aget_result(pushed.id)
        finally:
            await aio.aclose()

    return asyncio.run(asyncio.wait_for(scenario(), 15))


def test_aenqueue_and_aget_result(django_env, redis, start_worker):
    from shop.tasks import add

    start_worker()
    assert aenqueued_and_awaited(add, 2, 3).return_value == 5


def test_run_after_goes_through_the_schedule(django_env, redis, start_worker):
    from django.utils import timezone

    from shop.tasks import add

    run_after = timezone.now() + timedelta(seconds=1)
    result = add.using(run_after=run_after).enqueue(1, 2)
    assert redis.zcard("schedule") == 1 and redis.llen("queue:default") == 0
    start_worker()
    result = finished(result)
    assert result.return_value == 3 and result.started_at >= run_after


def test_a_tasks_priority_orders_it_within_its_queue(django_env, redis, start_worker):
    from forkq import api
    from shop.tasks import record

    record.using(priority=-5).enqueue("low")
    record.enqueue("normal")
    record.using(priority=50).enqueue("high")
    assert api.Queue("default").levels == {50: 1, 0: 1, -5: 1}
    start_worker(concurrency=1)
    wait_for(lambda: redis.llen("shop:ran") == 3, 15, message="three tasks")
    assert redis.lrange("shop:ran", 0, -1) == ["high", "normal", "low"]


def test_retries_show_in_errors_and_attempts(django_env, redis, start_worker):
    from forkq.contrib.django.compat import TaskResultStatus
    from shop.tasks import flaky

    result = flaky.enqueue("shop:flaky")
    start_worker()

    def retry_scheduled():
        result.refresh()
        return result.errors and redis.zcard("retry") == 1

    wait_for(retry_scheduled, 15, message="the first failure")
    assert result.status == TaskResultStatus.READY and result.attempts == 1
    first_start = result.started_at
    for member in redis.zrange("retry", 0, -1):
        redis.zadd("retry", {member: 0})  # due now: the poller moves it back to its queue
    result = finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 2
    assert result.attempts == 2 and [e.exception_class for e in result.errors] == [RuntimeError]
    # Django: started_at is when the task first started; last_attempted_at, the last run
    assert result.started_at == first_start < result.last_attempted_at


def test_a_task_over_a_limiters_limit_is_ready_until_it_runs_and_ends_once(
        django_env, redis, start_worker):
    """Put back in the schedule by a forkq limiter, a task is no failure: ``READY`` with no
    error while it waits, no ``task_finished`` until the run that ends it. Before, each
    postponement recorded it ``FAILED`` with an ``OverLimit`` error and sent
    ``task_finished``."""
    from forkq.contrib.django.compat import TaskResultStatus
    from shop.tasks import SINGLE, limited

    with SINGLE:  # the test holds the only slot
        result = limited.enqueue("a")
        start_worker()

        def waiting_again():
            result.refresh()
            return result.status == TaskResultStatus.READY and redis.zcard("schedule")

        wait_for(waiting_again, 10, message="the task put back, READY")
        assert result.errors == [] and result.finished_at is None
    result = finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "a"
    assert result.errors == [] and redis.lrange("shop:limited", 0, -1) == ["a"]
    # task_finished is sent once the final record is written
    signals = wait_for(lambda: (sent := redis.lrange("shop:signals", 0, -1))[-1:] == [
        "finished:limited:SUCCESSFUL"] and sent, 5, message="the finish sent")
    assert set(signals[:-1]) == {"started:limited:RUNNING"} and len(signals) >= 3


def test_a_task_cancelled_while_running_ends_failed_with_one_finish(django_env, redis,
                                                                    start_worker):
    """Django's tasks have no cancelled status: ``FAILED``, without an error, and one
    ``task_finished``. Before, the run was first recorded ``READY`` with a ``Cancelled`` error
    (as a failure to retry) and ``task_finished`` sent with it."""
    import forkq
    from forkq.contrib.django.compat import TaskResultStatus
    from shop.tasks import waits_for_cancel

    result = waits_for_cancel.enqueue("shop:cancel")
    start_worker()
    wait_for(lambda: redis.lrange("shop:cancel", 0, -1) == ["started"], 10,
             message="the task running")
    assert forkq.cancel(result.id) == "running"
    result = finished(result)
    assert result.status == TaskResultStatus.FAILED and result.errors == []
    wait_for(lambda: redis.llen("shop:signals") == 2, 5, message="the finish sent")
    assert redis.lrange("shop:signals", 0, -1) == ["started:waits_for_cancel:RUNNING",
                                                   "finished:waits_for_cancel:FAILED"]


def test_retry_true_follows_the_workers_max_retries(django_env, redis, start_worker):
    """A worker with ``max_retries: 0`` sends a ``RETRY: true`` task to the dead set at its
    first failure; its result says so (FAILED), not READY ("will retry")."""
    from forkq.contrib.django.compat import TaskResultStatus
    from shop.tasks import explode

    result = explode.using(backend="patient").enqueue("no retries left")
    start_worker(settings={"max_retries": 0})
    wait_for(lambda: redis.zcard("dead") == 1, 15, message="the task's death")
    result.refresh()  # the result is written before the job goes to the dead set
    assert result.status == TaskResultStatus.FAILED and redis.zcard("retry") == 0
    assert result.attempts == 1 and [e.exception_class for e in result.errors] == [ValueError]


def test_the_worker_never_imports_an_unlisted_task_module(django_env, redis, start_worker):
    from forkq.client import build_payload
    from forkq.contrib.django.jobs import RunTask

    payload = build_payload(RunTask, ["shop.unlisted.touch", [], {}], {"retry": 0}, time.time())
    payload["enqueued_at"] = time.time()
    redis.sadd("queues", "default")
    redis.lpush("queue:default", json.dumps(payload))
    start_worker()
    dead = wait_for(lambda: redis.zrange("dead", 0, -1), 15, message="the job's death")
    assert json.loads(dead[0])["error_class"] == "forkq.contrib.django.registry.UnknownTaskError"
    assert redis.get("shop:imported") is None


def test_a_task_pushed_with_three_arguments_still_runs(django_env, redis, start_worker):
    """RunTask jobs queued before the task's using() settings travelled with it (arguments
    ``[module_path, args, kwargs]``) run, and read back as the task's own settings."""
    from forkq import results
    from forkq.client import build_payload
    from forkq.contrib.django.jobs import RunTask
    from forkq.keys import Keys
    from shop.tasks import add

    payload = build_payload(RunTask, ["shop.tasks.add", [20, 22], {}],
                            {"retry": 0, "result_ttl": 60}, time.time())
    for command in results.queued_commands(Keys(), payload, time.time()):
        redis.execute_command(*command)
    payload["enqueued_at"] = time.time()
    redis.sadd("queues", "default")
    redis.lpush("queue:default", json.dumps(payload))
    start_worker()
    result = finished(add.get_result(payload["jid"]))
    assert result.return_value == 42 and result.task == add


def test_mail_is_sent_by_the_worker_through_smtp(django_env, redis, start_worker):
    from aiosmtpd.controller import Controller
    from django.core.mail import EmailMultiAlternatives

    class Inbox:
        def __init__(self):
            self.envelopes = []

        async def handle_DATA(self, server, session, envelope):
            self.envelopes.append(envelope)
            return "250 OK"

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        message = EmailMultiAlternatives("Your receipt", "Thanks!", "shop@example.com",
                                         ["ann@example.com"], bcc=["audit@example.com"])
        message.attach_alternative("<p>Thanks!</p>", "text/html")
        message.attach("receipt.bin", b"\x00\x01binary", "application/octet-stream")
        assert message.send() == 1
        assert redis.llen("queue:emails") == 1 and not inbox.envelopes
        start_worker(SHOP_SMTP_PORT=str(port))
        (envelope,) = wait_for(lambda: inbox.envelopes, 15, message="the mail")
    finally:
        controller.stop()
    assert envelope.mail_from == "shop@example.com"
    assert sorted(envelope.rcpt_tos) == ["ann@example.com", "audit@example.com"]
    text = envelope.content.decode()
    assert "Subject: Your receipt" in text and "<p>Thanks!</p>" in text
    assert "receipt.bin" in text and "audit@example.com" not in text.split("\n\n")[0]


def test_get_result_of_an_unknown_id_raises(django_env, redis):
    from forkq import results
    from forkq.contrib.django.compat import TaskResultDoesNotExist
    from forkq.keys import Keys
    from shop.tasks import add

    with pytest.raises(TaskResultDoesNotExist, match="no result 'f+'"):
        add.get_result("f" * 24)
    plain = {"class": "jobs.Record", "args": [1], "jid": "e" * 24, "result_ttl": 60}
    results.ResultRecorder(Keys()).started(redis, plain, "w")
    with pytest.raises(TaskResultDoesNotExist, match="forkq job 'jobs.Record', not of a task"):
        add.get_backend().get_result("e" * 24)


def test_django_checks_the_arguments_first_then_forkq(django_env, redis):
    """Django's own message for what it refuses; what Django normalises (a tuple becomes a
    list) is pushed normalised; forkq's rule only for what Django lets through (NaN)."""
    from datetime import datetime

    from forkq.contrib.django.compat import InvalidTask
    from shop.tasks import add

    with pytest.raises(TypeError, match="Unsupported type"):
        add.enqueue(datetime.now())
    with pytest.raises(TypeError, match="Unsupported type"):
        add.enqueue(1, b={2})
    with pytest.raises(TypeError, match=r"shop.tasks.add.enqueue: args\[0\] is nan"):
        add.enqueue(float("nan"), 1)
    with pytest.raises(InvalidTask, match="Queue 'nowhere' is not valid"):
        add.using(queue_name="nowhere")
    assert redis.llen("queue:default") == 0
    result = add.enqueue((1, 2), b=(3,))
    assert result.args == [[1, 2]] and result.kwargs == {"b": [3]}
    (pushed,) = [json.loads(text) for text in redis.lrange("queue:default", 0, -1)]
    assert pushed["args"][1:3] == [[[1, 2]], {"b": [3]}]


def test_the_enqueued_result_equals_the_stored_one_with_its_using_settings(django_env, redis):
    """``enqueue``/``aenqueue`` return what ``get_result`` reads back (one clock read), with
    the task's ``using()`` settings and backend alias; ``refresh()`` works on a second alias."""
    from django.utils import timezone

    from forkq import aio
    from shop.tasks import add

    later = timezone.now() + timedelta(hours=1)
    tuned = add.using(priority=7, queue_name="emails", run_after=later)
    sync = tuned.enqueue(1, 2)
    assert tuned.get_result(sync.id) == sync and add.get_result(sync.id) == sync
    assert sync.task == tuned and sync.task.run_after == later

    async def pushed_from_a_coroutine():
        try:
            return await add.using(priority=-2).aenqueue(3, 4)
        finally:
            await aio.aclose()

    coroutine = asyncio.run(pushed_from_a_coroutine())
    assert add.get_result(coroutine.id) == coroutine and coroutine.task.priority == -2
    patient = add.using(backend="patient").enqueue(5, 6)
    found = patient.task.get_result(patient.id)
    assert found == patient and found.task.backend == "patient" and found.backend == "patient"
    assert add.get_backend().get_result(patient.id).task.backend == "patient"
    patient.refresh()
    assert patient == found


def test_inline_and_fake_run_django_tasks(django_env, redis):
    from forkq import testing
    from forkq.contrib.django.compat import TaskResultStatus, task_finished
    from shop.tasks import add, explode, slow_double, whoami

    finished_names = []

    def on_finished(sender, task_result, **kwargs):
        finished_names.append((task_result.task.name, task_result.status))

    task_finished.connect(on_finished)
    try:
        with testing.inline():
            result = add.enqueue(2, 3)
            assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
            assert add.get_result(result.id) == result
            context = whoami.enqueue("me")
            assert context.return_value == {"attempt": 1, "id": context.id, "label": "me"}
            with pytest.raises(ValueError, match="boom"):
                explode.enqueue("boom")
            assert asyncio.run(slow_double.aenqueue(4)).return_value == 8
        with testing.fake() as jobs:
            queued = add.using(priority=1).enqueue(4, 5)
            assert [j["args"][1] for j in jobs.jobs_for(add)] == [[4, 5]]
            assert add.get_result(queued.id).status == TaskResultStatus.READY
            assert jobs.drain() == 1
            assert add.get_result(queued.id).return_value == 9
    finally:
        task_finished.disconnect(on_finished)
    assert finished_names == [("add", "SUCCESSFUL"), ("whoami", "SUCCESSFUL"),
                              ("explode", "FAILED"), ("slow_double", "SUCCESSFUL"),
                              ("add", "SUCCESSFUL")]
    assert redis.llen("queue:default") == 0 and redis.keys("forkq:result:*") == []


def test_the_run_protocol_sends_what_get_result_reads(django_env, redis):
    """The worker's run protocol (``jobs.task_protocol``), run here on tasks the backend
    pushed: ``task_started`` and ``task_finished`` each send what ``get_result`` reads from
    Redis at that moment (a value, a failure retried or not, a value JSON cannot carry; a
    run after a retry, with its history), and the finish leaves the start's result as sent."""
    from forkq.contrib.django.compat import TaskResultStatus, task_finished, task_started
    from forkq.contrib.django.jobs import RunTask, task_protocol
    from forkq.payload import parse
    from shop.tasks import add, explode, returns_a_set, whoami

    sent = []

    def compare(sender, task_result, **kwargs):
        stored = task_result.task.get_backend().get_result(task_result.id)
        sent.append((task_result, task_result.status, stored))

    def run_pushed(payload=None):
        payload = payload or parse(redis.rpop("queue:default"))
        job = RunTask()
        job.jid, job.payload = payload["jid"], payload
        return task_protocol(job, payload, "default", lambda: job.perform(*payload["args"]))

    task_started.connect(compare)
    task_finished.connect(compare)
    try:
        for enqueued in (add.enqueue(2, 3), whoami.enqueue("me"), returns_a_set.enqueue()):
            run_pushed()
        retried = explode.using(backend="retrying").enqueue("again")
        failed = explode.enqueue("boom")
        first_run = parse(redis.lindex("queue:default", -1))
        for _ in range(2):
            with pytest.raises(ValueError):
                run_pushed()
        with pytest.raises(ValueError):  # its retry: the record's history is read, not guessed
            run_pushed(dict(first_run, retry_count=0, error_class="ValueError"))
    finally:
        task_started.disconnect(compare)
        task_finished.disconnect(compare)
    for task_result, status_when_sent, stored in sent:
        assert task_result == stored and task_result.status == status_when_sent
    statuses = [(result.task.name, result.status) for result, _, _ in sent]
    assert statuses == [("add", "RUNNING"), ("add", "SUCCESSFUL"), ("whoami", "RUNNING"),
                        ("whoami", "SUCCESSFUL"), ("returns_a_set", "RUNNING"),
                        ("returns_a_set", "FAILED"), ("explode", "RUNNING"), ("explode", "READY"),
                        ("explode", "RUNNING"), ("explode", "FAILED"), ("explode", "RUNNING"),
                        ("explode", "FAILED")]
    assert sent[1][0].return_value == 5 and sent[3][0].return_value["label"] == "me"
    assert "returned a builtins.set" in sent[5][0].errors[0].traceback
    last = sent[-1][0]
    assert last.id == retried.id and last.attempts == 2 and len(last.errors) == 2
    assert sent[-2][0].errors == last.errors[:1] and sent[9][0].id == failed.id
    assert returns_a_set.get_result(enqueued.id).status == TaskResultStatus.FAILED


def test_tasks_go_through_client_middleware_like_any_job(django_env, redis):
    from forkq import aio
    from forkq.contrib.django.compat import task_enqueued
    from forkq.hooks import registry
    from shop.tasks import add

    seen, announced = [], []

    def record(job_class, payload, queue, call_next):
        seen.append((job_class.wire_name(), payload["args"][0], queue))
        return None if payload["args"][1] == [0, 0] else call_next()

    def on_enqueued(sender, task_result, **kwargs):
        announced.append(task_result.id)

    async def push_from_a_coroutine():
        try:
            return await add.aenqueue(3, 4)
        finally:
            await aio.aclose()

    registry.middleware.add_client(record)
    task_enqueued.connect(on_enqueued)
    try:
        sync = add.enqueue(1, 2)
        pushed = asyncio.run(push_from_a_coroutine())
        refused = add.enqueue(0, 0)
    finally:
        registry.middleware.client.remove(record)
        task_enqueued.disconnect(on_enqueued)
    assert seen == [("forkq.contrib.django.jobs.RunTask", "shop.tasks.add", "default")] * 3
    assert redis.llen("queue:default") == 2 and announced == [sync.id, pushed.id]
    assert refused.id not in announced


def test_a_bad_configuration_is_reported_by_the_system_checks(django_env, tmp_path):
    from django.core import checks
    from django.core.exceptions import ImproperlyConfigured

    from forkq.contrib.django import ForkqBackend

    assert [m for m in checks.run_checks() if m.id.startswith("forkq")] == []
    backend = ForkqBackend("bad", {"OPTIONS": {"RESULT_TTL": 0, "COLOUR": "red",
                                               "REDIS_URL": "localhost:6379", "RETRY": -1,
                                               "CONFIG": str(tmp_path / "missing.yml")}})
    messages = [m.msg for m in backend.check()]
    assert {m.id for m in backend.check()} == {"forkq.E001"} and len(messages) == 5
    assert any("unknown key 'COLOUR'" in m for m in messages)
    assert any("'RESULT_TTL' must be a positive number" in m for m in messages)
    assert any("missing.yml: config file not found" in m for m in messages)
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        backend.get_result("a" * 24)


def test_options_from_a_forkq_yml(django_env, tmp_path):
    from forkq.contrib.django.options import parse

    path = tmp_path / "forkq.yml"
    path.write_text("redis_url: redis://db.example:6380/2\nnamespace: shop\n")
    parsed = parse({"CONFIG": str(path), "RESULT_TTL": 30}, "default")
    assert (parsed.redis_url, parsed.namespace, parsed.result_ttl) == \
        ("redis://db.example:6380/2", "shop", 30) and parsed.problems == ()
    client = parsed.client()
    assert client.keys.queue("default") == "shop:queue:default"
    assert parse({"CONFIG": str(path), "NAMESPACE": "other"}, "x").client() is not client


def test_check_warns_about_queues_the_worker_config_does_not_list(django_env, tmp_path):
    from forkq.contrib.django import ForkqBackend

    path = tmp_path / "forkq.yml"
    path.write_text("queues: [emails, default]\n")
    backend = ForkqBackend("x", {"QUEUES": ["emails", "reports"],
                                 "OPTIONS": {"CONFIG": str(path)}})
    (warning,) = backend.check()
    assert warning.id == "forkq.W001" and "reports" in warning.msg
    assert "emails," not in warning.msg
    assert ForkqBackend("x", {"QUEUES": ["emails"], "OPTIONS": {"CONFIG": str(path)}}).check() == []


def test_priority_bands_are_refused_with_the_advice_to_remove_them(django_env):
    from forkq.contrib.django import ForkqBackend

    backend = ForkqBackend("x", {"QUEUES": ["emails"], "OPTIONS": {"PRIORITY_BANDS": True}})
    (error,) = backend.check()
    assert error.id == "forkq.E001" and "orders it within its own queue" in error.msg


def test_model_arguments_travel_as_references_and_load_fresh_rows(django_env, redis,
                                                                   start_worker):
    from shop.jobs import ShipOrder
    from shop.models import Order

    order = Order.objects.create(item="lamp")
    ShipOrder.perform_async(order, "post")
    ShipOrder.set(queue="default").perform_in(0.1, order, "courier")
    (pushed,) = [json.loads(text) for text in redis.lrange("queue:default", 0, -1)]
    assert pushed["args"] == [{"_model": "shop.order", "_pk": order.pk}, "post"]
    Order.objects.filter(pk=order.pk).update(item="brass lamp")
    gone = Order.objects.create(item="vase")
    ShipOrder.perform_async(gone, "post")
    gone_pk = gone.pk
    gone.delete()
    start_worker()
    wait_for(lambda: redis.llen("shop:shipped") == 2, 15, message="two shipments")
    assert sorted(redis.lrange("shop:shipped", 0, -1)) == ["brass lamp:courier",
                                                           "brass lamp:post"]
    (dead,) = [json.loads(t) for t in wait_for(lambda: redis.zrange("dead", 0, -1), 15)]
    assert dead["error_class"] == "forkq.contrib.django.models.RowGone"
    assert f"shop.Order pk={gone_pk}, which no longer exists" in dead["error_message"]
    assert dead["retry_count"] == 0 and redis.zcard("retry") == 0, "retried a deleted row"


def test_stale_connections_are_closed_around_every_job_not_only_tasks(django_env, redis,
                                                                       start_worker):
    """The Django set-up's server middleware (forkq's hooks) closes the connection a job left
    (CONN_MAX_AGE 0, as after a request), so the next job on that thread starts with none."""
    from shop.jobs import TouchDatabase

    for _ in range(3):
        TouchDatabase.perform_async()
    start_worker(concurrency=1)
    wait_for(lambda: redis.llen("shop:connection_at_start") == 3, 15, message="three jobs ran")
    assert redis.lrange("shop:connection_at_start", 0, -1) == ["closed"] * 3


def test_only_model_jobs_take_instances_and_only_saved_ones(django_env, redis):
    from shop.jobs import ShipOrder
    from shop.models import Order

    from jobs import Record

    with pytest.raises(TypeError, match=r"jobs.Record.perform_async: args\[0\] is a "
                                        r"shop.models.Order"):
        Record.perform_async(Order.objects.create(item="x"))
    with pytest.raises(TypeError, match=r"shop.jobs.ShipOrder.perform_async: args\[0\] is an "
                                        r"unsaved shop.Order"):
        ShipOrder.perform_async(Order(item="y"), "post")
    with pytest.raises(TypeError, match=r"ShipOrder.perform_bulk: item 1 is a tuple"):
        ShipOrder.perform_bulk([[Order.objects.first(), "a"], (1, 2)])
    assert redis.llen("queue:default") == 0


@pytest.mark.parametrize("settings_module, ready", [("project.settings", True), (None, False)])
def test_the_before_require_entry_point_sets_django_up_only_when_asked(settings_module, ready):
    """What the worker will call before preloading require: (a fresh interpreter each)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(PYTHONPATH=os.pathsep.join([ROOT, PROJECT]), SHOP_DB=os.devnull)
    if settings_module:
        env["DJANGO_SETTINGS_MODULE"] = settings_module
    script = ("import sys; from importlib.metadata import entry_points\n"
              "(hook,) = entry_points(group='forkq.before_require', name='django')\n"
              "hook.load()()\n"
              "from django.apps import apps\n"
              "print(apps.ready)")
    probe = subprocess.run([sys.executable, "-c", script], env=env, cwd=PROJECT,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == [str(ready)]


def test_the_backend_loads_no_worker_code_in_the_application(django_env):
    script = ("import sys, django; django.setup()\n"
              "from shop.tasks import add\n"
              "add.get_backend()\n"
              "print(' '.join(m for m in sys.modules if m.startswith(('forkq.worker', "
              "'forkq.supervisor'))))")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(django_env, PYTHONPATH=os.pathsep.join([ROOT, PROJECT]))
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


CHECK_SETTINGS = """\
SECRET_KEY = "test-only"
INSTALLED_APPS = {apps!r}
TASKS = {{"default": {{"BACKEND": "forkq.contrib.django.ForkqBackend",
                      "OPTIONS": {{"COLOUR": "red"}}}}}}
"""


def manage_check(tmp_path, apps: list[str]) -> subprocess.CompletedProcess:
    """``django-admin check`` on a project whose settings hold only what is given."""
    (tmp_path / "check_settings.py").write_text(CHECK_SETTINGS.format(apps=apps))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]),
               DJANGO_SETTINGS_MODULE="check_settings")
    return subprocess.run([sys.executable, "-m", "django", "check"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("framework_app", [False, True])
def test_manage_py_check_reports_bad_options_once_from_the_app_config(tmp_path, framework_app):
    try:
        import django.tasks  # noqa: F401 (Django 6+: no app to install)
        framework = []
    except ImportError:
        framework = ["django_tasks"] if framework_app else []
    result = manage_check(tmp_path, [*framework, "forkq.contrib.django"])
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("forkq.E001") == 1
    assert "TASKS['default']['OPTIONS']: unknown key 'COLOUR'" in result.stderr


def test_a_tasks_module_that_fails_to_import_is_named(django_env, tmp_path, monkeypatch):
    """The set-up imports every installed app's tasks module; one that raises stops it, named."""
    from django.test import override_settings

    from forkq.contrib.django.setup import discover_tasks
    from forkq.errors import ConfigError

    package = tmp_path / "brokenapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text("raise RuntimeError('no database here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with override_settings(INSTALLED_APPS=["shop", "brokenapp"]):
        with pytest.raises(ConfigError, match=r"could not import the tasks module "
                                              r"'brokenapp.tasks': RuntimeError: no database"):
            discover_tasks()
    assert discover_tasks() == ["shop.tasks", "forkq.contrib.django.mail"]
