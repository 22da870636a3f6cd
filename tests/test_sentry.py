"""Error tracking (``forkq/contrib/sentry.py``) with sentry-sdk's own client and a transport
that records what it would send (no network): events and transactions of real job runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import sentry_sdk
from sentry_sdk.integrations import _installed_integrations, _processed_integrations
from sentry_sdk.transport import Transport

from forkq import hooks
from forkq.contrib import sentry as forkq_sentry
from forkq.contrib.sentry import ForkqIntegration
from helpers import wait_for
from otel_jobs import AsyncFailsOnce, FailsOnce, Traced

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Recording(Transport):
    """A transport that keeps each envelope instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list = []

    def capture_envelope(self, envelope) -> None:
        self.envelopes.append(envelope)

    def items(self, kind: str) -> list[dict]:
        return [item.payload.json for envelope in self.envelopes for item in envelope.items
                if item.type == kind]


@pytest.fixture
def sent():
    """Sentry on in this process with the forkq integration; its hooks removed at the end."""
    transport = Recording()
    sentry_sdk.init(dsn="https://public@sentry.invalid/1", transport=transport,
                    traces_sample_rate=1.0, integrations=[ForkqIntegration()])
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init()
    # sentry-sdk runs an integration's setup_once once per process: forget it, so that the
    # next test's init registers the hooks again and other modules run without them
    _installed_integrations.discard(ForkqIntegration.identifier)
    _processed_integrations.discard(ForkqIntegration.identifier)
    registry = hooks.registry
    for chain, hook in ((registry.middleware.client, forkq_sentry.enqueue),
                        (registry.middleware.server, forkq_sentry.run),
                        (registry.child_exit, forkq_sentry.flush)):
        chain.remove(hook)


def job_transactions(sent, jid: str) -> list[dict]:
    return [t for t in sent.items("transaction")
            if t["contexts"]["trace"].get("data", {}).get("messaging.message.id") == jid]


@pytest.mark.parametrize("job", [FailsOnce, AsyncFailsOnce], ids=["thread", "coroutine"])
def test_a_failure_reaches_sentry_with_the_job_and_each_run_is_a_transaction(
        redis, sent, start_worker, job):
    with sentry_sdk.start_transaction(name="POST /orders", op="http.server") as request:
        jid = job.perform_async()
    start_worker()
    wait_for(lambda: redis.lrange("obs:runs", 0, -1) == [jid], 15, message="the retry's end")
    wait_for(lambda: len(job_transactions(sent, jid)) == 2, 5, message="two transactions")
    (event,) = sent.items("event")
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert exception["mechanism"] == {"type": "forkq", "handled": False}
    assert event["tags"] == {"forkq.class": job.wire_name(), "forkq.jid": jid,
                             "forkq.queue": "default"}
    assert event["contexts"]["forkq"] == {"class": job.wire_name(), "jid": jid,
                                          "queue": "default"}
    assert event["transaction"] == job.wire_name()
    first, retry = sorted(job_transactions(sent, jid), key=lambda t: t["start_timestamp"])
    for run in (first, retry):
        assert run["transaction"] == job.wire_name()
        assert run["contexts"]["trace"]["op"] == "queue.task.forkq"
        assert run["contexts"]["trace"]["trace_id"] == request.trace_id
    assert event["contexts"]["trace"]["trace_id"] == request.trace_id
    assert first["contexts"]["trace"]["status"] == "internal_error"
    assert retry["contexts"]["trace"]["status"] == "ok"
    assert retry["contexts"]["trace"]["data"]["messaging.message.retry.count"] == 0


def test_a_retried_run_tags_its_retry_count_and_args_only_with_pii(redis, sent):
    context = forkq_sentry.job_context({"class": "C", "jid": "j", "args": [1],
                                        "retry_count": 2}, "q")
    assert context == {"class": "C", "jid": "j", "queue": "q", "retry_count": 2}
    sentry_sdk.get_client().options["send_default_pii"] = True
    assert forkq_sentry.job_context({"class": "C", "args": [1]}, "q")["args"] == [1]


def test_without_the_integration_the_hooks_pass_through(redis, sent, start_worker):
    sentry_sdk.init(dsn="https://public@sentry.invalid/1", transport=sent,
                    traces_sample_rate=1.0, default_integrations=False)
    jid = Traced.perform_async(1)
    assert "sentry" not in redis.lrange("queue:default", 0, -1)[0]
    start_worker()
    wait_for(lambda: redis.lrange("obs:runs", 0, -1) == [jid], 15, message="the run")
    assert sent.items("transaction") == [] and sent.items("event") == []


@pytest.mark.parametrize("setup, says", [
    ("import sys; sys.modules['sentry_sdk'] = None", "needs sentry-sdk (import of sentry_sdk"),
    ("import sentry_sdk; sentry_sdk.VERSION = '3.0.0'", "needs sentry-sdk 2.x, not 3.0.0")],
    ids=["absent", "3.x"])
def test_without_a_sentry_sdk_2_the_import_says_what_to_install(setup, says):
    script = f"{setup}\nimport forkq.contrib.sentry"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert says in last and last.endswith("install it with pip install 'forkq[sentry]'")


WORKER_SETUP = """
import json, os

import sentry_sdk
from sentry_sdk.transport import Transport

import otel_jobs  # noqa: F401 (the jobs)
from forkq.contrib.sentry import ForkqIntegration


class ToFile(Transport):
    def capture_envelope(self, envelope):
        with open(os.environ["SENTRY_ITEMS_FILE"], "a") as handle:
            for item in envelope.items:
                handle.write(json.dumps({"type": item.type, "pid": os.getpid(),
                                         "body": item.payload.json}) + "\\n")


sentry_sdk.init(dsn="https://public@sentry.invalid/1", transport=ToFile(),
                traces_sample_rate=1.0, integrations=[ForkqIntegration()])
"""


@pytest.mark.slow
def test_set_up_in_the_master_a_worker_child_reports_its_jobs(redis, start_master, tmp_path):
    items_file = tmp_path / "sentry.jsonl"
    master = start_master(modules={"sentry_worker": WORKER_SETUP}, require=["sentry_worker"],
                          processes=1, env={"SENTRY_ITEMS_FILE": str(items_file)})
    (child,) = master.ready_pids(1)
    jid = FailsOnce.perform_async()
    wait_for(lambda: redis.lrange("obs:runs", 0, -1) == [jid], 20, message="the retry")

    def items():
        lines = items_file.read_text().splitlines() if items_file.exists() else []
        return [json.loads(line) for line in lines]
    wait_for(lambda: len([i for i in items() if i["type"] == "transaction"]) == 2, 10,
             message="two transactions")
    (event,) = [item for item in items() if item["type"] == "event"]
    assert event["pid"] == child
    assert event["body"]["tags"]["forkq.jid"] == jid
    assert event["body"]["exception"]["values"][0]["type"] == "ValueError"
    assert {item["pid"] for item in items()} == {child}
    # Stopped, not killed at teardown: a killed child's blocked fetch could still take the
    # next test's job from Redis.
    master.send(signal.SIGTERM)
    assert master.wait_exit(20) == 0
