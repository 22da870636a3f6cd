"""The Django tasks backend on a real Redis Cluster (``cluster_nodes.py``): the test project
(``tests/django_project``) enqueues through a backend whose ``REDIS_URL`` is the cluster's, a
real ``python -m forkq.worker`` on the cluster runs the tasks, and ``get_result`` reads them
back; a task with a priority is refused as Django refuses it for a backend without
priorities (cluster mode does not order by priority yet)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest

from forkq import client as forkq_client
from forkq.keys import ClusterKeys
from test_django import PROJECT, ROOT, WORKER_REQUIRE, aenqueued_and_awaited, finished
from test_django import django_env  # noqa: F401 (a fixture: the project set up)

pytestmark = pytest.mark.slow

KEYS = ClusterKeys()


@pytest.fixture
def cluster_tasks(cluster, django_env):
    """The project's ``default`` tasks backend pointed at the cluster."""
    from django.conf import settings
    from django.test import override_settings

    tasks = {alias: dict(backend) for alias, backend in settings.TASKS.items()}
    tasks["default"]["OPTIONS"] = {**tasks["default"]["OPTIONS"], "REDIS_URL": cluster.url}
    with override_settings(TASKS=tasks):
        yield cluster


@pytest.fixture
def cluster_worker(cluster_tasks, django_env, tmp_path):
    """``start()`` starts ``python -m forkq.worker`` of the project on the cluster; stopped
    with TERM at teardown."""
    url, started = cluster_tasks.url, []
    config = {"redis_url": url, "queues": ["default", "emails"], "require": WORKER_REQUIRE,
              "concurrency": 2, "poll_interval": 0.2, "heartbeat_interval": 0.5,
              "timeout": 5, "data_dir": str(tmp_path / "data"), "metrics": {"port": None}}
    path = tmp_path / "forkq.yml"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(django_env, SHOP_REDIS_URL=url, PYTHONPATH=os.pathsep.join([ROOT, PROJECT]))
    log_path = tmp_path / "worker.log"

    def start() -> None:
        with open(log_path, "wb") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "forkq.worker", "-c", str(path)], cwd=PROJECT, env=env,
                stdout=log, stderr=subprocess.STDOUT))

    yield start
    for proc in started:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()


def test_tasks_enqueue_run_and_give_results_on_a_cluster(cluster_tasks, cluster_worker):
    from django.utils import timezone

    from forkq.contrib.django.compat import TaskResultStatus
    from shop.tasks import add, explode, slow_double, whoami

    pushed = add.enqueue(2, 3)
    assert add.get_result(pushed.id).status == TaskResultStatus.READY
    redis = forkq_client.default().redis
    assert redis.llen(KEYS.queue("default")) == 1
    context = whoami.enqueue("me")
    doubled = slow_double.enqueue(21)
    failed = explode.enqueue("boom")
    later = add.using(run_after=timezone.now() + timedelta(seconds=0.3)).enqueue(1, 1)
    assert redis.zcard(KEYS.schedule_for("default")) == 1
    cluster_worker()
    assert finished(pushed).return_value == 5 and pushed.attempts == 1
    assert finished(context).return_value == {"attempt": 1, "id": context.id, "label": "me"}
    assert finished(doubled).return_value == 42
    assert finished(later).return_value == 2 and later.started_at >= later.task.run_after
    failed = finished(failed)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class is ValueError
    assert redis.zcard(KEYS.dead) == 1, "RETRY: 0 sends the failed task to the dead set"


def test_aenqueue_and_aget_result_on_a_cluster(cluster_tasks, cluster_worker):
    from shop.tasks import add

    cluster_worker()
    assert aenqueued_and_awaited(add, 2, 3).return_value == 5


def test_a_task_with_a_priority_waits_at_its_level_and_runs_on_a_cluster(cluster_tasks,
                                                                        cluster_worker):
    from shop.tasks import add

    assert add.get_backend().supports_priority is True
    urgent = add.using(priority=3).enqueue(1, 2)
    redis = forkq_client.default().redis
    assert redis.llen(KEYS.level("default", 3)) == 1 and redis.llen(KEYS.queue("default")) == 0
    cluster_worker()
    done = finished(urgent)
    assert (done.return_value, done.task.priority) == (3, 3)
