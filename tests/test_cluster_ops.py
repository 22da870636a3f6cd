"""Operating a fleet on a Redis Cluster (``layout: cluster``): the web UI's pages and actions,
the ``/metrics`` exporter, ``forkqctl`` and hard time limits, on a real cluster of 3 primaries
and 3 replicas (``cluster_nodes.py``), with queues spread over every primary."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import flow_jobs
import jobs  # noqa: F401 (registers the jobs these tests run)
from forkq import client as forkq_client
from forkq.api import Api
from forkq.payload import dumps
from forkq.web.app import App
from harness import free_port
from helpers import wait_for
from test_cluster import KEYS, cluster_master  # noqa: F401 (a fixture)
from test_web import Browser


def spread_queues(redis, count: int = 3) -> list[str]:
    """``count`` queue names whose lists live on ``count`` different primaries."""
    names, owners = [], set()
    for index in itertools.count():
        owner = redis.get_node_from_key(KEYS.queue(f"q{index}")).name
        if owner not in owners:
            owners.add(owner)
            names.append(f"q{index}")
        if len(names) == count:
            return names


def failed(jid: str, queue: str) -> str:
    return dumps({"class": "jobs.Record", "args": [jid], "jid": jid, "queue": queue,
                  "error_class": "RuntimeError", "error_message": "boom", "retry_count": 1,
                  "failed_at": time.time()})


def key_of(entries, jid: str) -> str:
    return next(entry.key for entry in entries if entry.jid == jid)


def test_every_page_renders_and_each_action_works_across_the_primaries(cluster, start_worker,
                                                                        make_config):
    redis = forkq_client.default().redis
    a, b, c = spread_queues(redis)
    for name in (a, b, c):
        jobs.Record.set(queue=name).perform_async(name)
    now = time.time()
    for index, name in enumerate((a, b, c, a)):  # the soonest first, in three queues
        jobs.Record.set(queue=name).perform_at(now + 3600 + 60 * index, f"sched-{index}-job")
    for index, name in enumerate((a, b, c)):
        redis.zadd(KEYS.retry_for(name), {failed(f"r-{name}", name): now + 600 + index})
    redis.zadd(KEYS.dead, {failed("dead-c", c): now - 10})
    jobs.Record.set(queue="idle").perform_async("ran")
    start_worker(redis_url=cluster.url, queues=["idle"])
    api = Api(redis, KEYS)
    wait_for(lambda: api.processes() and redis.llen("ran"), message="a heartbeat, a job run")
    web = Browser(App(make_config(redis_url=cluster.url), None, environ={}))

    for path in ("/", "/busy", "/queues", f"/queues/{a}", "/scheduled", "/retries", "/morgue",
                 "/metrics", "/periodic", f"/retries/{key_of(api.retries.page(), f'r-{b}')}"):
        assert web.get(path).status == 200, path
    stats = json.loads(web.get("/stats").text)
    assert [stats[name] for name in ("enqueued", "scheduled", "retries", "dead", "processes")] \
        == [3, 4, 3, 1, 1]
    assert all(f"/queues/{name}" in web.get("/queues").text for name in (a, b, c, "idle"))
    first, second = web.get("/scheduled?count=2").text, web.get("/scheduled?count=2&page=2").text
    assert [text.count(f"sched-{i}-job") for text in (first, second) for i in range(4)] == \
        [1, 1, 0, 0, 0, 0, 1, 1]  # one order over the three queues' sets
    found = web.get("/scheduled?q=sched-3-job").text
    assert 'class="count">1</span>' in found and "sched-0-job" not in found
    wait_for(lambda: "jobs.Record" in web.get("/metrics").text, message="the class's metrics")
    assert "jobs.Record" in web.get("/metrics/jobs.Record").text
    assert web.get("/batches").status == 200  # workflows run there (test_cluster_workflows)

    scheduled = {entry.args[0]: entry for entry in api.scheduled.page(0, 10)}
    for action, args in (("add_to_queue", "sched-1-job"), ("delete", "sched-2-job")):
        assert web.post("/scheduled", {"action": action, "key": scheduled[args].key}).status \
            == 303
    assert (redis.llen(KEYS.queue(b)), redis.zcard(KEYS.schedule_for(b))) == (2, 0)
    assert redis.zcard(KEYS.schedule_for(c)) == 0 and api.scheduled.size == 2
    web.post("/scheduled", {"action": "add_all_to_queue"})
    assert api.scheduled.size == 0 and redis.llen(KEYS.queue(a)) == 3

    retries = api.retries.page(0, 10)
    for action, jid in (("retry_now", f"r-{a}"), ("kill", f"r-{b}"), ("delete", f"r-{c}")):
        web.post("/retries", {"action": action, "key": key_of(retries, jid)})
    assert json.loads(redis.lindex(KEYS.queue(a), 0))["retry_count"] == 0  # not spent
    assert api.retries.size == 0 and {e.jid for e in api.dead.page()} == {"dead-c", f"r-{b}"}
    (stale,) = [entry for entry in api.dead.page() if entry.jid == "dead-c"]
    web.post("/morgue", {"action": "retry_now", "key": stale.key})
    assert [e.jid for e in api.dead.page()] == [f"r-{b}"]
    assert not api.dead.retry_now(stale)  # a second admin's click: its copy taken back out
    assert [json.loads(text)["args"] for text in redis.lrange(KEYS.queue(c), 0, -1)] == \
        [["dead-c"], [c]]

    (job,) = [entry for entry in api.queue(b).jobs() if entry.args == [b]]
    web.post(f"/queues/{b}", {"action": "delete", "job": job.ident, "index": "1"})
    assert [entry.args for entry in api.queue(b).jobs()] == [["sched-1-job"]]
    web.post(f"/queues/{a}", {"action": "pause"})
    web.post(f"/queues/{c}", {"action": "clear"})
    assert api.paused_queues() == {a} and not redis.exists(KEYS.queue(c))
    assert c not in redis.smembers(KEYS.queues)
    web.post("/morgue", {"action": "retry_all"})
    assert api.dead.size == 0 and json.loads(redis.lindex(KEYS.queue(b), 0))["jid"] == f"r-{b}"
    web.post("/busy", {"action": "quiet", "identity": "*"})
    wait_for(lambda: all(p.quiet for p in api.processes()), message="a quiet heartbeat")


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        families = text_string_to_metric_families(reply.read().decode())
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families for sample in family.samples}


def forkqctl(master, *args: str) -> subprocess.CompletedProcess:
    script = os.path.join(os.path.dirname(sys.executable), "forkqctl")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return subprocess.run([script, *args, "-c", "forkq.yml"], cwd=master.dir, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_a_master_on_the_cluster_is_scraped_and_controlled_by_forkqctl(cluster, cluster_master):
    redis = forkq_client.default().redis
    a, b, c = spread_queues(redis)
    port = free_port()
    master = cluster_master(processes=1, queues=["idle"], metrics={"port": port})
    (child,) = master.ready_pids(1)
    for name in (a, b, b, c):
        jobs.Record.set(queue=name).perform_async(name)
    for name in (a, b, c):
        jobs.Record.set(queue=name).perform_in(3600, name)
    redis.zadd(KEYS.retry_for(c), {failed("r-c", c): time.time() + 600})
    redis.zadd(KEYS.dead, {failed("dead", a): time.time()})

    wait_for(lambda: scrape(port).get(("forkq_child_heartbeat_timestamp_seconds",
                                       (("child", "0"), ("pid", str(child))))),
             message="the child's heartbeat in the scrape")
    found = scrape(port)
    assert [found[("forkq_queue_size", (("queue", name),))] for name in (a, b, c, "idle")] == \
        [1, 2, 1, 0]
    assert found[("forkq_queue_latency_seconds", (("queue", a),))] >= 0
    assert [found[(f"forkq_{name}_size", ())] for name in ("scheduled", "retry", "dead")] == \
        [3, 1, 1]
    assert (found[("forkq_redis_up", ())], found[("forkq_batches_open", ())]) == (1, 0)

    status = json.loads(forkqctl(master, "status", "--json").stdout)
    assert [p["pid"] for p in status["processes"]] == [child]
    assert {q["name"]: q["size"] for q in status["queues"]} == {a: 1, b: 2, c: 1, "idle": 0}
    assert (status["totals"]["queued"], status["totals"]["scheduled"],
            status["totals"]["retries"], status["totals"]["dead"]) == (4, 3, 1, 1)
    assert forkqctl(master, "pause", a).returncode == 0
    assert Api(redis, KEYS).paused_queues() == {a}
    assert forkqctl(master, "quiet").returncode == 0
    api = Api(redis, KEYS)
    wait_for(lambda: all(p.quiet for p in api.processes()), message="a quiet heartbeat")
    stop = forkqctl(master, "stop", "--timeout", "10")
    assert stop.returncode == 0 and f"forkq master {master.pid} stopped in" in stop.stdout
    assert master.wait_exit(5) == 0


@pytest.mark.slow
def test_a_hard_time_limit_replaces_the_child_on_the_cluster(cluster, cluster_master):
    redis = forkq_client.default().redis
    master = cluster_master(require=["flow_jobs"], processes=1, concurrency=3, timeout=1)
    (first,) = master.ready_pids(1)
    other = flow_jobs.Slow.perform_async(4)
    wait_for(lambda: redis.hget("flow:started", other), message="the other job started")
    jid = flow_jobs.StuckInSleep.perform_async()
    wait_for(lambda: redis.zcard(KEYS.retry_for("default")) == 1, timeout=10,
             message="the job in its queue's retry set")
    job = json.loads(redis.zrange(KEYS.retry_for("default"), 0, 0)[0])
    assert job["jid"] == jid and job["error_class"] == "forkq.TimeLimitExceeded"
    (second,) = wait_for(lambda: [pid for pid in master.ready_pids() if pid != first] or None,
                         timeout=15, message="a new child")
    wait_for(lambda: redis.lrange("flow:runs", 0, -1) == [other], timeout=15,
             message="the other job requeued and run by the new child")
    assert int(redis.hget("flow:started", other)) == second
    assert redis.llen(KEYS.queue("default")) == 0 and redis.zcard(KEYS.dead) == 0
    assert "ran past its time_limit of 1 s" in master.log()
