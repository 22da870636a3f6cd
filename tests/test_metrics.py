"""forkq.metrics: job counts across children, the exporter's series and health, Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import psutil
import pytest
import redis as redis_py
from prometheus_client.mmap_dict import mmap_key
from prometheus_client.parser import text_string_to_metric_families

from forkq import metrics
from forkq.ident import hostname
from forkq.metrics import store

from harness import free_port
from helpers import modules_loaded_by, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


# --- helpers -------------------------------------------------------------------------------

def samples(families) -> dict:
    """{(sample name, frozenset of labels): value} of metric families."""
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def job_samples(directory: str) -> dict:
    return samples(store.collect(directory))


def db_files(directory: str) -> set[str]:
    return {name for name in os.listdir(directory) if name.endswith(".db")}


def series(queue: str, job_class: str, **extra) -> frozenset:
    return frozenset({"queue": queue, "class": job_class, **extra}.items())


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def beat(redis, pid: int, busy: int = 0, concurrency: int = 10, host: str | None = None,
         when: float | None = None, coroutines: int = 0) -> float:
    """Write a heartbeat as forkq.worker.heartbeat.Heartbeat.beat does; returns its time."""
    host = host or hostname()
    identity = f"{host}:{pid}:{os.urandom(6).hex()}"
    when = when or time.time()
    info = {"hostname": host, "started_at": when, "pid": pid, "tag": "", "labels": [],
            "concurrency": concurrency, "async_concurrency": 100, "queues": ["default"],
            "identity": identity,
            "version": "0.1.0", "embedded": False}
    redis.sadd("processes", identity)
    redis.hset(identity, mapping={"info": json.dumps(info), "concurrency": concurrency,
                                  "busy": busy, "coroutines": coroutines, "beat": when,
                                  "quiet": "false", "rss": 1000, "rtt_us": 100})
    redis.expire(identity, 60)
    return when


def write_status(config, children: list[dict], processes: int | None = None) -> None:
    """The master's status file, written atomically as the supervisor does."""
    status = {"master_pid": os.getpid(), "started_at": time.time(), "version": "0.1.0",
              "tag": "", "processes": len(children) if processes is None else processes,
              "concurrency": config.concurrency,
              "children": [{"slot": i, "started_at": time.time(), "ready": True,
                            "restarts": 0, **child} for i, child in enumerate(children)]}
    os.makedirs(config.data_dir, exist_ok=True)
    path = os.path.join(config.data_dir, "status.json")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(status, handle)
    os.replace(path + ".tmp", path)


def write_child_file(directory: str, pid: int, processed: int) -> None:
    """A dead child's counter file as a JobObserver leaves it."""
    files = store.open_file(store.child_file(directory, "counter", pid))
    key = mmap_key("forkq_jobs_processed", "forkq_jobs_processed_total", ["queue", "class"],
                   ["default", "HardJob"], "Jobs finished, failed ones included.")
    files.write_value(key, processed, 0.0)
    files.close()


@pytest.fixture
def children():
    """Sleeping processes standing in for worker children (psutil can read them)."""
    started = []

    def start(count: int) -> list[subprocess.Popen]:
        for _ in range(count):
            started.append(subprocess.Popen([sys.executable, "-c",
                                             "import time\n"
                                             "end = time.process_time() + 0.05\n"
                                             "while time.process_time() < end: pass\n"
                                             "time.sleep(120)"]))
        return started[-count:]

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture
def directory(make_config):
    path = store.prepare(make_config())
    yield path
    os.environ.pop(store.ENV, None)


_EXPORTER = textwrap.dedent("""
    import json, sys
    from forkq import config, log, metrics
    log.setup("INFO")
    metrics.run_exporter(config.from_mapping(json.loads(sys.argv[1])))
""")


class Exporter:
    def __init__(self, config_values: dict, directory: str) -> None:
        self.port = config_values["metrics"]["port"]
        env = dict(os.environ, **{store.ENV: directory})
        self.process = subprocess.Popen([sys.executable, "-c", _EXPORTER,
                                         json.dumps(config_values)], cwd=ROOT, env=env,
                                        stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, str]:
        return http_get(self.url + path)

    def scrape(self) -> dict:
        code, body = self.get("/metrics")
        assert code == 200, body
        return samples(text_string_to_metric_families(body))

    def listening(self) -> bool:
        try:
            self.get("/healthz")
            return True
        except OSError:
            return False

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(10)


@pytest.fixture
def exporter(make_config, directory):
    """Start an exporter subprocess on a free port; stopping it must exit 0."""
    running = []

    def start(**values) -> Exporter:
        values.setdefault("metrics", {"port": free_port()})
        make_config(**values)  # validates the keys as forkq start would
        values.setdefault("redis_url", make_config().redis_url)
        values.setdefault("data_dir", make_config().data_dir)
        running.append(Exporter(values, directory))
        wait_for(running[-1].listening, message="the exporter to listen")
        return running[-1]

    yield start
    for process in running:
        assert process.stop() == 0, process.process.stderr.read()


# --- JobObserver and the metrics directory ---------------------------------------------------

def test_observer_counts_jobs_by_queue_and_class(directory):
    observer = metrics.JobObserver()
    observer.job_finished("default", "HardJob", 0.001, False)
    observer.job_finished("default", "HardJob", 0.2, True)
    observer.job_finished("default", "HardJob", 700.0, False)
    observer.job_finished("critical", "unknown", 0.03, True)
    observer.jobs_recovered(2)
    observer.job_poisoned()
    observer.close()

    found = job_samples(directory)
    assert found[("forkq_jobs_processed_total", series("default", "HardJob"))] == 3
    assert found[("forkq_jobs_failed_total", series("default", "HardJob"))] == 1
    assert found[("forkq_jobs_processed_total", series("critical", "unknown"))] == 1
    assert found[("forkq_jobs_failed_total", series("critical", "unknown"))] == 1
    bucket = "forkq_job_duration_seconds_bucket"
    assert found[(bucket, series("default", "HardJob", le="0.005"))] == 1
    assert found[(bucket, series("default", "HardJob", le="0.25"))] == 2
    assert found[(bucket, series("default", "HardJob", le="600.0"))] == 2
    assert found[(bucket, series("default", "HardJob", le="+Inf"))] == 3
    assert found[("forkq_job_duration_seconds_count", series("default", "HardJob"))] == 3
    assert found[("forkq_job_duration_seconds_sum", series("default", "HardJob"))] == \
        pytest.approx(700.201)
    assert found[("forkq_jobs_recovered_total", frozenset())] == 2
    assert found[("forkq_jobs_poison_total", frozenset())] == 1


def test_observer_writes_without_being_asked(directory):
    observer = metrics.JobObserver()
    try:
        observer.job_finished("default", "HardJob", 0.01, False)
        key = ("forkq_jobs_processed_total", series("default", "HardJob"))
        wait_for(lambda: job_samples(directory).get(key) == 1, timeout=5,
                 message="the periodic flush")
    finally:
        observer.close()


def test_observer_is_exact_under_concurrent_threads(directory):
    observer = metrics.JobObserver()

    def run() -> None:
        for n in range(2000):
            observer.job_finished("default", "HardJob", 0.001, n % 4 == 0)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    observer.close()
    found = job_samples(directory)
    assert found[("forkq_jobs_processed_total", series("default", "HardJob"))] == 16000
    assert found[("forkq_jobs_failed_total", series("default", "HardJob"))] == 4000


_CHILD = textwrap.dedent("""
    import sys
    from prometheus_client import Counter
    from forkq.metrics import JobObserver
    app = Counter("app_emails", "Emails sent by the application's jobs.")
    observer = JobObserver()
    for n in range(int(sys.argv[1])):
        observer.job_finished("default", "HardJob", 0.01, n == 0)
        app.inc()
    observer.close()
""")


def test_counts_survive_dead_children_and_files_stay_bounded(directory):
    """Children recycle: their counts are kept, their files folded into the archives."""
    archives = {"counter_archive.db", "histogram_archive.db"}
    for run, jobs in enumerate((3, 4, 5)):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(jobs)], cwd=ROOT)
        assert child.wait(30) == 0
        own = {f"counter_forkq_{child.pid}.db", f"histogram_forkq_{child.pid}.db",
               f"counter_{child.pid}.db"}
        assert db_files(directory) == own | (archives if run else set())
        before = job_samples(directory)
        metrics.mark_dead(child.pid)
        assert job_samples(directory) == before
        assert db_files(directory) == archives

    found = job_samples(directory)
    assert found[("forkq_jobs_processed_total", series("default", "HardJob"))] == 12
    assert found[("forkq_jobs_failed_total", series("default", "HardJob"))] == 3
    assert found[("forkq_job_duration_seconds_count", series("default", "HardJob"))] == 12
    assert found[("app_emails_total", frozenset())] == 12


def test_a_scrape_never_counts_a_folding_child_twice(directory):
    """Reads race with folds: each must see the dead child once, in its file or the archive."""
    write_child_file(directory, 1_000_000, 10)
    metrics.mark_dead(1_000_000)
    seen, errors, done = set(), [], threading.Event()
    key = ("forkq_jobs_processed_total", series("default", "HardJob"))

    def scrape() -> None:
        while not done.wait(0.001):  # a breath between scrapes lets the folds take the lock
            try:
                seen.add(job_samples(directory)[key])
            except Exception as exc:  # reported below: a scrape must never fail
                errors.append(exc)

    reader = threading.Thread(target=scrape)
    reader.start()
    try:
        for pid in range(1_000_001, 1_000_201):
            write_child_file(directory, pid, 1)
            metrics.mark_dead(pid)
    finally:
        done.set()
        reader.join()
    assert errors == []
    assert job_samples(directory)[key] == 210
    assert seen <= set(range(10, 211)), f"a scrape saw a double count: {sorted(seen)}"


def test_prepare_empties_the_directory_and_exports_it(make_config):
    config = make_config()
    first = store.prepare(config)
    write_child_file(first, 4242, 7)
    try:
        assert store.prepare(config) == first
        assert os.environ[store.ENV] == first
        assert os.listdir(first) == []
    finally:
        os.environ.pop(store.ENV, None)


# --- the exporter ----------------------------------------------------------------------------

def test_healthz_waits_for_every_child_heartbeat(redis, make_config, exporter, children):
    config = make_config()
    first, second = children(2)
    served = exporter()
    assert served.get("/healthz") == (503, "no status file yet\n")

    write_status(config, [{"pid": first.pid}, {"pid": second.pid}])
    code, reason = served.get("/healthz")
    assert (code, reason) == (503, "no heartbeat yet from child 0, 1\n")

    beat(redis, first.pid)
    beat(redis, second.pid, host="another-machine")  # same pid elsewhere: not our child
    assert served.get("/healthz") == (503, "no heartbeat yet from child 1\n")

    beat(redis, second.pid)
    assert served.get("/healthz") == (200, "ok\n")


def test_healthz_waits_for_every_slot(redis, make_config, exporter, children):
    config = make_config()
    (only,) = children(1)
    beat(redis, only.pid)
    served = exporter()
    write_status(config, [{"pid": only.pid}], processes=2)
    assert served.get("/healthz") == (503, "1 of 2 worker children started\n")


def test_metrics_report_children(redis, make_config, exporter, children):
    config = make_config(concurrency=7)
    alive, = children(1)
    wait_for(lambda: sum(psutil.Process(alive.pid).cpu_times()[:2]) >= 0.05,
             message="the stand-in child has used some CPU")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_status(config, [{"pid": alive.pid, "restarts": 2}, {"pid": gone.pid}])
    beat_time = beat(redis, alive.pid, busy=43, concurrency=7, coroutines=40)
    served = exporter(concurrency=7, max_memory_mb=300)

    found = served.scrape()
    live, dead = frozenset({"child": "0", "pid": str(alive.pid)}.items()), \
        frozenset({"child": "1", "pid": str(gone.pid)}.items())
    assert found[("forkq_child_up", live)] == 1
    assert found[("forkq_child_up", dead)] == 0
    assert found[("forkq_child_restarts_total", live)] == 2
    assert found[("forkq_child_restarts_total", dead)] == 0
    assert found[("forkq_child_heartbeat_timestamp_seconds", live)] == pytest.approx(beat_time)
    assert found[("forkq_child_busy_threads", live)] == 3  # the coroutine jobs apart
    assert found[("forkq_child_concurrency", live)] == 7
    assert found[("forkq_child_busy_coroutines", live)] == 40
    assert found[("forkq_child_async_concurrency", live)] == 100
    rss = psutil.Process(alive.pid).memory_info().rss
    assert found[("forkq_child_resident_memory_bytes", live)] == pytest.approx(rss, rel=0.2)
    cpu = psutil.Process(alive.pid).cpu_times()
    assert 0 < found[("forkq_child_cpu_seconds_total", live)] <= cpu.user + cpu.system
    assert ("forkq_child_resident_memory_bytes", dead) not in found
    assert ("forkq_child_busy_threads", dead) not in found
    info = frozenset({"version": "0.1.0", "processes": "2", "concurrency": "7"}.items())
    assert found[("forkq_info", info)] == 1
    assert found[("forkq_memory_limit_bytes", frozenset())] == 300 * 1024 * 1024
    assert found[("forkq_redis_up", frozenset())] == 1


def test_metrics_report_queues_and_sets(redis, make_config, exporter, directory):
    now = time.time()
    redis.sadd("queues", "default", "mail")
    redis.lpush("queue:default", json.dumps({"class": "A", "enqueued_at": now - 30}),
                json.dumps({"class": "A", "enqueued_at": now - 5}), json.dumps({"class": "A"}))
    redis.lpush("queue:mail", json.dumps({"class": "M", "enqueued_at": int((now - 90) * 1000)}))
    redis.zadd("schedule", {"a": 1, "b": 2})
    redis.zadd("retry", {"c": 1})
    redis.zadd("dead", {"d": 1, "e": 2, "f": 3, "g": 4})
    observer = metrics.JobObserver()
    observer.job_finished("default", "HardJob", 0.01, False)
    observer.job_finished("default", "HardJob", 0.02, True)
    observer.close()
    served = exporter(queues=["default", "mail", "idle"])

    found = served.scrape()
    for name in ("default", "mail", "idle"):
        assert found[("forkq_queue_size", frozenset({"queue": name}.items()))] == \
            redis.llen(f"queue:{name}")
    latency = {name: found[("forkq_queue_latency_seconds", frozenset({"queue": name}.items()))]
               for name in ("default", "mail", "idle")}
    assert 30 <= latency["default"] < 40
    assert 90 <= latency["mail"] < 100  # enqueued_at in integer milliseconds
    assert latency["idle"] == 0
    assert found[("forkq_scheduled_size", frozenset())] == 2
    assert found[("forkq_retry_size", frozenset())] == 1
    assert found[("forkq_dead_size", frozenset())] == 4
    assert found[("forkq_jobs_processed_total", series("default", "HardJob"))] == 2
    assert found[("forkq_jobs_failed_total", series("default", "HardJob"))] == 1


def test_metrics_report_paused_queues_and_cancelled_jobs(redis, exporter, directory):
    import control_jobs
    from forkq import api, cancel

    assert cancel(control_jobs.Plain.perform_async(1)) == "queued"
    api.Queue("media").pause()
    found = exporter(queues=["default"]).scrape()
    assert found[("forkq_queue_paused", frozenset({"queue": "media"}.items()))] == 1
    assert found[("forkq_queue_paused", frozenset({"queue": "default"}.items()))] == 0
    assert found[("forkq_jobs_cancelled_total", frozenset())] == 1


def test_text_that_is_not_utf8_does_not_stop_a_scrape(redis, redis_url, exporter, directory):
    raw = redis_py.Redis.from_url(redis_url)
    raw.sadd("queues", b"bad\xff", b"default")
    raw.lpush(b"queue:bad\xff", b"{}")
    raw.lpush(b"queue:default", b'{"class":"A","args":["\xfe"],"enqueued_at":NaN}', b"\xff")
    found = exporter().scrape()
    assert found[("forkq_redis_up", frozenset())] == 1
    assert found[("forkq_queue_size", frozenset({"queue": "default"}.items()))] == 2
    assert found[("forkq_queue_latency_seconds", frozenset({"queue": "default"}.items()))] == 0
    assert found[("forkq_queue_size", frozenset({"queue": "bad\ufffd"}.items()))] == 1


def test_redis_down_leaves_the_rest_served(make_config, exporter, directory, children):
    config = make_config()
    (child,) = children(1)
    write_status(config, [{"pid": child.pid}])
    observer = metrics.JobObserver()
    observer.job_finished("default", "HardJob", 0.01, False)
    observer.close()
    served = exporter(redis_url=f"redis://127.0.0.1:{free_port()}/0")

    found = served.scrape()
    assert found[("forkq_redis_up", frozenset())] == 0
    assert found[("forkq_child_up", frozenset({"child": "0", "pid": str(child.pid)}.items()))] == 1
    assert found[("forkq_jobs_processed_total", series("default", "HardJob"))] == 1
    assert not any(name == "forkq_queue_size" for name, _ in found)
    assert served.get("/healthz") == (503, "Redis unavailable: cannot see heartbeats\n")


@pytest.mark.slow
def test_an_idle_connection_is_dropped(exporter):
    """A client that connects and sends nothing must not hold a thread of the exporter."""
    served = exporter()
    limit = metrics.exporter.IDLE_TIMEOUT + 5
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.port), timeout=limit) as idle:
        try:
            assert idle.recv(1) == b"", "closed without an answer"
        except TimeoutError:
            pytest.fail(f"an idle connection was still open after {limit} s")
    assert time.monotonic() - started < limit
    assert served.get("/healthz")[0] in (200, 503), "the exporter still answers"


def test_a_taken_port_is_a_warning_and_exit_0(make_config, directory):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config()
        values = {"redis_url": config.redis_url, "data_dir": config.data_dir,
                  "metrics": {"port": port}}
        process = Exporter(values, directory).process
        assert process.wait(10) == 0
        assert "cannot listen on 127.0.0.1:%d" % port in process.stderr.read()


def test_a_null_port_serves_nothing(make_config):
    assert metrics.run_exporter(make_config(metrics={"port": None})) is None


# --- Prometheus ----------------------------------------------------------------------------

_RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'forkq_child_up{{instance="w1", child="0", pid="10"}}'
        values: '1 0 0 0 0'
      - series: 'forkq_queue_latency_seconds{{instance="w1", queue="default"}}'
        values: '400x10'
      - series: 'forkq_child_resident_memory_bytes{{instance="w1", child="1", pid="11"}}'
        values: '290000000x12'
      - series: 'forkq_memory_limit_bytes{{instance="w1"}}'
        values: '300000000x12'
      - series: 'forkq_child_up{{instance="w1", child="2", pid="12"}}'
        values: '1x12'
      - series: 'forkq_child_heartbeat_timestamp_seconds{{instance="w1", child="2", pid="12"}}'
        values: '0x12'
      - series: 'forkq_redis_up{{instance="w1"}}'
        values: '1x12'
      - series: 'forkq_dead_size{{instance="w1"}}'
        values: '0+1x40'
      - series: 'forkq_dead_size{{instance="w2"}}'
        values: '0+1x40'
    alert_rule_test:
      - eval_time: 2m
        alertname: ForkqChildDown
        exp_alerts: []
      - eval_time: 4m
        alertname: ForkqChildDown
        exp_alerts:
          - exp_labels: {{severity: critical, instance: w1, child: "0", pid: "10"}}
            exp_annotations:
              summary: forkq worker child 0 on w1 is down
              description: The slot has had no running process for 2 minutes (crash loop halted?).
      - eval_time: 6m
        alertname: ForkqQueueLatencyHigh
        exp_alerts:
          - exp_labels: {{severity: warning, instance: w1, queue: default}}
            exp_annotations:
              summary: "forkq queue default: oldest job has waited 6m 40s"
              description: Jobs are enqueued faster than they are processed; add processes or look for slow jobs.
      - eval_time: 4m
        alertname: ForkqChildNotBeating
        exp_alerts:
          - exp_labels: {{severity: warning, instance: w1, child: "2", pid: "12"}}
            exp_annotations:
              summary: forkq child 2 (pid 12) on w1 has no fresh heartbeat
              description: "The process runs but does not beat: it is stuck, and its jobs will be recovered by others."
      - eval_time: 10m
        alertname: ForkqDeadSetGrowing
        exp_alerts: []
      - eval_time: 35m
        alertname: ForkqDeadSetGrowing
        exp_alerts:
          - exp_labels: {{severity: warning}}
            exp_annotations:
              summary: forkq dead set keeps growing (15 jobs in 15 minutes)
              description: Jobs exhaust their retries; inspect the dead set in the web UI.
      - eval_time: 11m
        alertname: ForkqChildMemoryNearLimit
        exp_alerts:
          - exp_labels: {{severity: warning, instance: w1, child: "1", pid: "11"}}
            exp_annotations:
              summary: forkq child 1 on w1 is near max_memory_mb
              description: Children are recycled at max_memory_mb; staying near it means frequent recycling or a leak.
"""


@pytest.mark.slow
def test_alert_rules_are_valid_and_fire(tmp_path):
    if not os.path.exists(PROMTOOL):
        pytest.skip(f"{PROMTOOL} is missing: apt-get install prometheus")
    rules = os.path.join(DEPLOY, "alerts.yml")
    check = subprocess.run([PROMTOOL, "check", "rules", rules], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = tmp_path / "alerts_test.yml"
    unit.write_text(_RULE_TESTS.format(rules=json.dumps(rules)))
    result = subprocess.run([PROMTOOL, "test", "rules", str(unit)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def prometheus_config(tmp_path, port: int) -> str:
    """deploy/prometheus.yml and its rules, pointed at a test port and scraped every second."""
    import yaml

    with open(os.path.join(DEPLOY, "prometheus.yml"), encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9191"]
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{port}"]
    shutil.copy(os.path.join(DEPLOY, "alerts.yml"), tmp_path / "alerts.yml")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def query(port: int, expression: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expression})
    try:
        code, body = http_get(url)
    except OSError:
        return []
    return json.loads(body)["data"]["result"] if code == 200 else []


@pytest.mark.slow
def test_prometheus_scrapes_the_exporter(redis, make_config, exporter, directory, children,
                                         tmp_path):
    if not os.path.exists(PROMETHEUS):
        print(f"skipping: {PROMETHEUS} is missing (apt-get install prometheus)")
        pytest.skip(f"{PROMETHEUS} is missing: apt-get install prometheus")
    config = make_config()
    (child,) = children(1)
    write_status(config, [{"pid": child.pid}])
    beat(redis, child.pid, busy=1)
    redis.sadd("queues", "default")
    redis.lpush("queue:default", *[json.dumps({"class": "A", "enqueued_at": time.time()})] * 4)
    observer = metrics.JobObserver()
    observer.job_finished("default", "HardJob", 0.01, False)
    observer.close()
    served = exporter()
    api_port = free_port()
    server = subprocess.Popen(
        [PROMETHEUS, f"--config.file={prometheus_config(tmp_path, served.port)}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{api_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = wait_for(lambda: query(api_port, "forkq_queue_size"), timeout=60,
                          message="Prometheus to scrape forkq_queue_size")
        assert [(r["metric"]["queue"], r["metric"]["job"], r["value"][1]) for r in result] == \
            [("default", "forkq", "4")]
        processed = query(api_port, "forkq_jobs_processed_total")
        assert [(r["metric"]["class"], r["value"][1]) for r in processed] == [("HardJob", "1")]
        up = query(api_port, "forkq_child_up")
        assert [(r["metric"]["pid"], r["value"][1]) for r in up] == [(str(child.pid), "1")]
        code, body = http_get(f"http://127.0.0.1:{api_port}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        assert [g["name"] for g in groups] == ["forkq"]
        assert all(rule["health"] != "err" for rule in groups[0]["rules"])
    finally:
        server.terminate()
        server.wait(30)


def test_the_exporter_loads_no_worker_code():
    assert modules_loaded_by("import forkq.metrics.exporter, forkq.metrics.collector",
                             ("forkq.worker", "forkq.supervisor")) == []


def test_bad_records_are_not_redis_down(redis, make_config, exporter, children):
    """No deep ``info``, producer's ``SADD processes queue:x``, ``LPUSH retry x`` or queue of
    another type stops a scrape or reads as Redis down (which fires ForkqRedisDown); the good
    child's heartbeat and the good queue still count."""
    config = make_config()
    (child,) = children(1)
    write_status(config, [{"pid": child.pid}])
    beat(redis, child.pid, busy=2)
    redis.sadd("processes", "deep:1:abc", "queue:x")
    redis.hset("deep:1:abc", mapping={"info": "[" * 5000 + "]" * 5000, "busy": 1})
    redis.lpush("queue:x", "{}")
    redis.lpush("retry", "x")
    redis.sadd("queues", "default", "hashed")
    redis.hset("queue:hashed", "a", "b")
    redis.lpush("queue:default", "{}")
    served = exporter()

    found = served.scrape()
    assert found[("forkq_redis_up", frozenset())] == 1
    bad = {kind: found[("forkq_bad_records", frozenset({"kind": kind}.items()))]
           for kind in ("heartbeat", "queue", "set")}
    assert bad == {"heartbeat": 2, "queue": 1, "set": 1}
    assert found[("forkq_queue_size", frozenset({"queue": "default"}.items()))] == 1
    assert found[("forkq_retry_size", frozenset())] == 0
    labels = frozenset({"child": "0", "pid": str(child.pid)}.items())
    assert found[("forkq_child_busy_threads", labels)] == 2
    assert served.get("/healthz") == (200, "ok\n")


def test_metrics_count_every_level_and_the_largest_tenant_backlogs(redis, exporter, directory):
    from forkq.metrics.collector import TOP_TENANTS
    from priority_jobs import Record

    Record.set(priority=4).perform_async("urgent")
    Record.perform_async("plain")
    for tenant in range(TOP_TENANTS + 2):
        Record.set(fair_key=f"t{tenant}", queue="shared").perform_bulk(
            [[tenant]] * (tenant + 1))
    found = exporter(queues=["default", "shared"]).scrape()
    assert found[("forkq_queue_size", frozenset({"queue": "default"}.items()))] == 2
    assert found[("forkq_queue_size", frozenset({"queue": "shared"}.items()))] == \
        sum(range(1, TOP_TENANTS + 3))
    assert found[("forkq_queue_tenants", frozenset({"queue": "shared"}.items()))] == \
        TOP_TENANTS + 2
    backlog = {dict(labels)["tenant"]: value for (name, labels), value in found.items()
               if name == "forkq_queue_tenant_backlog"}
    assert backlog == {f"t{t}": t + 1 for t in range(2, TOP_TENANTS + 2)}
