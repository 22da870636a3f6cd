"""Error tracking (``forkq/contrib/sentry/``) with sentry-sdk's own client and a transport
that records what it would send (no network): events and traced runs of real jobs. The main
suite runs it with the sentry-sdk that ``forkq[sentry]`` installs (3.x, spans), ``tests/run``
again with 2.x (transactions), beside the Django 6 tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import sentry_sdk
from sentry_sdk.integrations import _installed_integrations, _processed_integrations
from sentry_sdk.transport import Transport

from forkq import hooks
from forkq.errors import Cancelled, Shutdown
from forkq.contrib import sentry as forkq_sentry
from forkq.contrib.sentry import ForkqIntegration
from forkq.limiter import OverLimit
from helpers import wait_for
from otel_jobs import AsyncFailsOnce, FailsOnce, Traced

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: sentry-sdk 3 streams spans; 2 sends transactions
SPANS = sentry_sdk.VERSION.startswith("3.")
#: a run that raised: 3.x has only ``ok`` and ``error``
ERROR_STATUS = "error" if SPANS else "internal_error"


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


def traced_runs(items: list[dict]) -> list[dict]:
    """The traced runs among sent items (``{"type", "body"}``), each as a transaction
    (sentry-sdk 2.x) or a root span (3.x) says it: name, op, status, trace id, data, start."""
    runs = []
    for item in items:
        if item["type"] == "transaction":
            trace = item["body"]["contexts"]["trace"]
            runs.append({"name": item["body"]["transaction"], "op": trace.get("op"),
                         "status": trace.get("status"), "trace_id": trace["trace_id"],
                         "data": trace.get("data", {}),
                         "start": item["body"]["start_timestamp"]})
        elif item["type"] == "span":
            for span in item["body"]["items"]:
                data = {key: value["value"] for key, value in span["attributes"].items()}
                if span.get("is_segment"):
                    runs.append({"name": span["name"], "op": data.get("sentry.op"),
                                 "status": span["status"], "trace_id": span["trace_id"],
                                 "data": data, "start": span["start_timestamp"]})
    return sorted(runs, key=lambda run: run["start"])


def sent_items(sent) -> list[dict]:
    sentry_sdk.flush()  # 3.x batches spans
    return [{"type": item.type, "body": item.payload.json}
            for envelope in sent.envelopes for item in envelope.items]


def job_runs(sent, jid: str) -> list[dict]:
    return [run for run in traced_runs(sent_items(sent))
            if run["data"].get("messaging.message.id") == jid]


def request_span():
    """A web request's root, the trace an enqueue inside it carries."""
    if SPANS:
        return sentry_sdk.start_span(name="POST /orders", attributes={"sentry.op": "http.server"})
    return sentry_sdk.start_transaction(name="POST /orders", op="http.server")


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


@pytest.mark.parametrize("job", [FailsOnce, AsyncFailsOnce], ids=["thread", "coroutine"])
def test_a_failure_reaches_sentry_with_the_job_and_each_run_is_a_transaction(
        redis, sent, start_worker, job):
    with request_span() as request:
        jid = job.perform_async()
    start_worker()
    wait_for(lambda: redis.lrange("obs:runs", 0, -1) == [jid], 15, message="the retry's end")
    wait_for(lambda: len(job_runs(sent, jid)) == 2, 5, message="two traced runs")
    (event,) = sent.items("event")
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert {key: exception["mechanism"][key] for key in ("type", "handled")} == {
        "type": "forkq", "handled": False}
    assert event["tags"] == {"forkq.class": job.wire_name(), "forkq.jid": jid,
                             "forkq.queue": "default"}
    # 3.x sends a job's args by default (data_collection's queues), 2.x only with PII
    assert event["contexts"]["forkq"] == {"class": job.wire_name(), "jid": jid,
                                          "queue": "default", **({"args": []} if SPANS else {})}
    assert event["transaction"] == job.wire_name()
    first, retry = job_runs(sent, jid)
    for run in (first, retry):
        assert run["name"] == job.wire_name()
        assert run["op"] == "queue.task.forkq"
        assert run["trace_id"] == request.trace_id
        assert run["data"]["messaging.destination.name"] == "default"
    assert event["contexts"]["trace"]["trace_id"] == request.trace_id
    assert first["status"] == ERROR_STATUS
    assert retry["status"] == "ok"
    assert "messaging.message.retry.count" not in first["data"]
    assert retry["data"]["messaging.message.retry.count"] == 0


def test_a_retried_run_tags_its_retry_count_and_args_as_sentry_sends_such_data(redis, sent):
    """2.x sends the job's args only with ``send_default_pii``; 3.x unless ``data_collection``
    turns ``queues`` off."""
    options = sentry_sdk.get_client().options
    if SPANS:
        options["data_collection"]["queues"] = False
    context = forkq_sentry.job_context({"class": "C", "jid": "j", "args": [1],
                                        "retry_count": 2}, "q")
    assert context == {"class": "C", "jid": "j", "queue": "q", "retry_count": 2}
    if SPANS:
        options["data_collection"]["queues"] = True
    else:
        options["send_default_pii"] = True
    assert forkq_sentry.job_context({"class": "C", "args": [1]}, "q")["args"] == [1]


@pytest.mark.parametrize("stop", [OverLimit("api", 1.0), Shutdown(), Cancelled()],
                         ids=["postponed", "shutdown", "cancelled"])
def test_a_run_stopped_without_failing_sends_no_event_and_is_no_error(redis, sent, stop):
    """A limiter's postponement, a stop at the shutdown deadline and a cancel raise through
    the middleware, as in the processor's runs; the run is traced as aborted (2.x) or ok
    (3.x), never as an error."""
    payload = {"class": "Postponed", "jid": "postponed-1", "args": []}

    def call_next():
        raise stop

    with pytest.raises(type(stop)):
        forkq_sentry.run(Traced(), payload, "default", call_next)
    (run,) = job_runs(sent, "postponed-1")
    assert run["status"] == ("ok" if SPANS else "aborted")
    assert sent.items("event") == []


def test_a_producers_trace_field_that_is_not_ours_starts_a_trace_of_its_own(
        redis, sent, start_worker):
    """Another producer's ``sentry`` field (a string, a header that is not text) is not a
    trace to continue: the job runs, traced in a new trace."""
    jids = []
    for index, field in enumerate(["not a mapping", {"sentry-trace": 5, "baggage": ["x"]}]):
        jid = f"hostile-{index}"
        jids.append(jid)
        redis.lpush("queue:default", json.dumps({
            "class": Traced.wire_name(), "args": [1], "jid": jid, "queue": "default",
            "retry": True, "created_at": time.time(), "enqueued_at": time.time(),
            "sentry": field}))
    start_worker()
    wait_for(lambda: sorted(redis.lrange("obs:runs", 0, -1)) == jids, 15, message="the runs")
    wait_for(lambda: all(len(job_runs(sent, jid)) == 1 for jid in jids), 5,
             message="a traced run each")
    assert all(job_runs(sent, jid)[0]["status"] == "ok" for jid in jids)
    assert sent.items("event") == []


def test_without_the_integration_the_hooks_pass_through(redis, sent, start_worker):
    sentry_sdk.init(dsn="https://public@sentry.invalid/1", transport=sent,
                    traces_sample_rate=1.0, default_integrations=False)
    jid = Traced.perform_async(1)
    assert "sentry" not in redis.lrange("queue:default", 0, -1)[0]
    start_worker()
    wait_for(lambda: redis.lrange("obs:runs", 0, -1) == [jid], 15, message="the run")
    assert traced_runs(sent_items(sent)) == [] and sent.items("event") == []


@pytest.mark.parametrize("setup, says", [
    ("import sys; sys.modules['sentry_sdk'] = None", "needs sentry-sdk (import of sentry_sdk"),
    ("import sentry_sdk; sentry_sdk.VERSION = '4.0.0'", "needs sentry-sdk 2.x or 3.x, not 4.0.0")],
    ids=["absent", "4.x"])
def test_without_a_supported_sentry_sdk_the_import_says_what_to_install(setup, says):
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
    # sentry-sdk 3 sends spans in batches, every 5 s
    wait_for(lambda: len(traced_runs(items())) == 2, 15, message="two traced runs")
    (event,) = [item for item in items() if item["type"] == "event"]
    assert event["pid"] == child
    assert event["body"]["tags"]["forkq.jid"] == jid
    assert event["body"]["exception"]["values"][0]["type"] == "ValueError"
    assert {item["pid"] for item in items()} == {child}
    # Stopped, not killed at teardown: a killed child's blocked fetch could still take the
    # next test's job from Redis.
    master.send(signal.SIGTERM)
    assert master.wait_exit(20) == 0
