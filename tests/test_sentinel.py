"""Sentinel failover: kill -9 the primary while a real worker drains jobs and a producer pushes;
everything follows the promoted replica. Counts jobs run twice and jobs lost, with and without
``wait_replicas`` (docs/guides/production-redis.md says what each guarantees)."""

import asyncio
import contextlib
import json
import re
import signal
import time
from dataclasses import dataclass, field

import pytest
import redis as redis_py

import forkq
from forkq import aio, connection
from forkq import client as forkq_client
from forkq.web.app import App
from failover_jobs import Producer
from helpers import stop_process, wait_for
from jobs import Record
from redis_nodes import SentinelGroup
from test_web import Browser
from test_worker import log_text, spawn

#: jobs queued (and replicated) before the primary dies
PRELOADED = 3000
#: jobs a producer pushes one by one across the failover
PUSHED = 300
#: jobs the worker runs while the replicas lag behind the primary, just before its death
LAG_JOBS = 300
#: the worker's line for a new primary: the old and new ports
MOVED = re.compile(r"Redis primary of Sentinel service 'forkq' moved from \S+:(\d+) to \S+:(\d+)")


@pytest.fixture
def group(tmp_path):
    nodes = SentinelGroup(tmp_path / "nodes", replicas=2)
    try:
        nodes.wait_until_ready()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def runs_file(tmp_path, monkeypatch, redis, redis_url):
    path = tmp_path / "runs"
    path.touch()
    monkeypatch.setenv("FAILOVER_RUNS_FILE", str(path))
    yield path
    forkq_client.configure(redis_url=redis_url)


def note_payload(value: str) -> str:
    return json.dumps({"class": "failover_jobs.note", "args": [value], "jid": value.rjust(24, "0"),
                       "queue": "default", "retry": True, "enqueued_at": time.time()})


@dataclass
class Outcome:
    failover_seconds: float
    resumed_seconds: float
    runs: list[str]
    expected: set[str]
    producer_errors: int
    log: str
    switches: list[tuple[int, int]]
    lost: set[str] = field(init=False)
    twice: int = field(init=False)

    def __post_init__(self) -> None:
        self.lost = self.expected - set(self.runs)
        self.twice = len(self.runs) - len(set(self.runs))

    def report(self, name: str) -> str:
        return (f"{name}: failover {self.failover_seconds:.1f} s, worker resumed "
                f"{self.resumed_seconds:.1f} s after the kill, {len(self.runs)} runs of "
                f"{len(self.expected)} jobs, run twice {self.twice}, lost {len(self.lost)}, "
                f"producer errors {self.producer_errors}")


def read_runs(path) -> list[tuple[str, float]]:
    return [(value, float(at)) for value, at in
            (line.split() for line in path.read_text().splitlines())]


def succeeds(call) -> bool:
    with contextlib.suppress(redis_py.RedisError):
        return bool(call())
    return False


def settled(admin) -> bool:
    """Nothing queued, scheduled or held in a private list on the (new) primary."""
    inflight = admin.keys("forkq:inflight:*")
    return (admin.llen("queue:default") == 0 and admin.zcard("schedule") == 0
            and sum(admin.llen(key) for key in inflight) == 0)


def kill_primary_while_replicas_lag(group, runs_file) -> tuple[float, float]:
    """Cut the replicas off (stopped, so they cannot reconnect) while the worker runs
    ``LAG_JOBS`` more jobs, so that the primary holds writes no replica has; kill -9 it,
    resume the replicas, and wait for the promotion. Returns the time of the kill and the
    seconds until the promotion."""
    for replica in group.replicas:
        stop_process(replica.process.pid)
    try:
        group.primary.client().client_kill_filter(_type="replica")
        ran = len(read_runs(runs_file))
        wait_for(lambda: len(read_runs(runs_file)) >= ran + LAG_JOBS, timeout=30)
        old_port, killed = group.primary.port, time.time()
        group.primary.kill()
    finally:
        for replica in group.replicas:
            replica.process.send_signal(signal.SIGCONT)
    wait_for(lambda: group.primary_port() != old_port, timeout=30, interval=0.05,
             message="the sentinels to promote a replica")
    return killed, time.time() - killed


def drain_through_failover(group, tmp_path, runs_file, make_config, url) -> Outcome:
    admin = group.primary.client()
    admin.sadd("queues", "default")
    admin.lpush("queue:default", *[note_payload(f"j{i}") for i in range(PRELOADED)])
    assert admin.execute_command("WAIT", 2, 5000) == 2, "the preloaded jobs are replicated"
    forkq_client.configure(redis_url=url)
    held = connection.make_client(url, single_connection_client=True)
    web = Browser(App(make_config(redis_url=url, web={"read_only": True}), None, environ={}))
    assert held.ping() and web.get("/queues").status == 200
    worker = spawn(tmp_path, url, require=["failover_jobs"], concurrency=5, timeout=5)
    producer = Producer(PUSHED)
    try:
        wait_for(lambda: len(read_runs(runs_file)) >= PRELOADED // 5, timeout=30)
        producer.start()
        killed, failover = kill_primary_while_replicas_lag(group, runs_file)
        new_primary = group.node(group.primary_port()).client()
        # The first command on a socket the kill broke fails, as on a restart, and the
        # sentinels may still disagree for a moment after the promotion.
        wait_for(lambda: succeeds(held.ping), timeout=10,
                 message="a single-connection client to follow the new primary")
        wait_for(lambda: web.get("/queues").status == 200 and web.get("/").status == 200,
                 timeout=10, message="the web UI to follow the new primary")
        producer.join(60)
        import failover_jobs
        failover_jobs.note.perform_in(0.3, "scheduled-after")
        wait_for(lambda: "scheduled-after" in {v for v, _ in read_runs(runs_file)}
                 and settled(new_primary), timeout=60, message="the queue to drain")
        wait_for(lambda: new_primary.scard("processes") == 1, message="the heartbeat to follow")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
    runs = read_runs(runs_file)
    resumed = min(at for _, at in runs if at > killed + failover) - killed
    expected = {f"j{i}" for i in range(PRELOADED)} | set(producer.acknowledged)
    return Outcome(failover, resumed, [value for value, _ in runs if value != "scheduled-after"],
                   expected, producer.errors, log_text(tmp_path), group.switches())


def assert_followed_and_logged_once(outcome: Outcome) -> None:
    """The worker logs each move of the primary it follows once: the primaries its log names
    run forward along the sentinels' promotions (one, or more when a loaded machine makes the
    sentinels give up on one), from the primary that was killed."""
    primaries = [outcome.switches[0][0], *(new for _, new in outcome.switches)]
    logged = MOVED.findall(outcome.log)
    assert logged and int(logged[0][0]) == primaries[0], (logged, outcome.switches)
    seen = [primaries[0], *(int(new) for _, new in logged)]
    assert set(seen) <= set(primaries), (logged, outcome.switches)
    positions = [primaries.index(port) for port in seen]
    assert positions == sorted(set(positions)), (logged, outcome.switches)
    assert outcome.log.count("Redis unavailable") <= len(outcome.switches)
    assert outcome.failover_seconds < 15 and outcome.resumed_seconds < 20


@pytest.mark.slow
@pytest.mark.fault
def test_kill_9_the_primary_without_wait(group, tmp_path, runs_file, make_config):
    outcome = drain_through_failover(group, tmp_path, runs_file, make_config, group.url)
    print(outcome.report("without wait_replicas"))
    assert_followed_and_logged_once(outcome)
    assert not {job for job in outcome.lost if job.startswith("j")}, \
        "the worker side never loses a replicated job; only unreplicated pushes can vanish"
    assert outcome.twice > 0, "work done while the replicas lagged is undone, and redone"


@pytest.mark.slow
@pytest.mark.fault
def test_kill_9_the_primary_with_wait_replicas(group, tmp_path, runs_file, make_config):
    url = group.url + "?wait_replicas=1&wait_timeout=2"
    outcome = drain_through_failover(group, tmp_path, runs_file, make_config, url)
    print(outcome.report("with wait_replicas=1"))
    assert_followed_and_logged_once(outcome)
    assert outcome.lost == set(), "a push confirmed by a replica survives the failover"


def test_a_connection_taken_out_of_the_pool_follows_the_new_primary(group):
    """The fetcher keeps one connection outside the pool; after an error it must reconnect to
    the promoted replica, not to the dead primary's host and port."""
    client = connection.make_client(group.url)
    held = client.connection_pool.get_connection()
    held.send_command("SET", "before", "1")
    assert held.read_response() == "OK"
    old_port = group.primary.port
    group.primary.kill()
    wait_for(lambda: group.primary_port() != old_port, timeout=30, interval=0.05)
    with pytest.raises(redis_py.ConnectionError):
        held.send_command("PING")
        held.read_response()
    held.disconnect()

    def set_after():
        held.send_command("SET", "after", "1")
        return held.read_response() == "OK"
    wait_for(lambda: succeeds(set_after), timeout=10, message="the held connection to follow")
    assert held.port == group.primary_port() != old_port
    assert client.blmove("nothing", "elsewhere", 0.1, "RIGHT", "RIGHT") is None
    client.connection_pool.release(held)
    client.close()


@pytest.mark.fault
def test_a_primary_that_stops_answering_times_out_and_is_followed_again(group):
    """A connection that follows the primary keeps its timeout in the kernel too: a primary
    stopped mid-command ends the wait as ``TimeoutError``, and the next command reconnects."""
    client = connection.make_client(group.url + "?socket_timeout=0.3")
    assert client.ping()
    stop_process(group.primary.process.pid)
    try:
        with pytest.raises(redis_py.TimeoutError):
            client.ping()
    finally:
        group.primary.process.send_signal(signal.SIGCONT)
    wait_for(lambda: succeeds(client.ping), timeout=30, message="the primary, or its successor")
    assert client.connection_pool.get_connection().kernel_timeout == 0.3
    client.close()


def test_the_replicas_confirm_a_push_with_wait_replicas(group):
    client = connection.make_client(group.url + "?wait_replicas=2")
    connection.send_commands(client, [("LPUSH", "queue:x", "job")])
    refused = connection.make_client(group.url + "?wait_replicas=3&wait_timeout=0.2")
    # two replicas: never 3; a loaded machine's replica may also miss the 200 ms
    with pytest.raises(connection.ReplicaTimeoutError, match=r"confirmed by [0-2] of 3 replica"):
        connection.send_commands(refused, [("LPUSH", "queue:x", "job")])
    held = client.connection_pool.get_connection()
    assert connection.call_replicated(client, held, "LLEN", "queue:x") == 2
    client.connection_pool.release(held)
    client.close()
    refused.close()


async def until_done(call, timeout: float, message: str):
    """``call()``'s result once it stops raising ``RedisError``, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except redis_py.RedisError:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {message}") from None
            await asyncio.sleep(0.05)


@pytest.mark.fault
def test_the_asyncio_client_follows_the_new_primary(group, redis):
    """kill -9 the primary under a running event loop: the next push reaches the promoted
    replica through the same asyncio client, and so does a connection held out of its pool."""
    forkq.configure(redis_url=group.url + "?wait_replicas=3&wait_timeout=0.2")
    with pytest.raises(connection.ReplicaTimeoutError, match=r"confirmed by [0-2] of 3 replica"):
        asyncio.run(push_and_close(aio.perform_async(Record, "too few replicas")))
    forkq.configure(redis_url=group.url)

    async def scenario():
        before = await aio.perform_async(Record, "before")
        held = await aio.redis().connection_pool.get_connection()
        old_port = group.primary.port
        group.primary.kill()
        with pytest.raises(redis_py.ConnectionError, match=re.escape(group.url)):
            await aio.perform_async(Record, "while the sentinels still name the dead primary")
        await asyncio.to_thread(wait_for, lambda: group.primary_port() != old_port,
                                timeout=15, interval=0.05, message="a promotion")
        after = await until_done(lambda: aio.perform_async(Record, "after"), 10, "a push")
        await held.disconnect()
        await until_done(lambda: held.send_command("PING"), 5, "the held connection")
        assert await held.read_response() == "PONG" and held.port == group.primary_port()
        await aio.redis().connection_pool.release(held)
        return before, after

    before, after = asyncio.run(push_and_close(scenario()))
    new_primary = group.node(group.primary_port()).client()
    jobs = [json.loads(job) for job in new_primary.lrange("queue:default", 0, -1)]
    assert [job["jid"] for job in jobs[:2]] == [after, before]
    assert jobs[2]["args"] == ["too few replicas"], "WAIT follows the write it confirms"


async def push_and_close(coroutine):
    try:
        return await coroutine
    finally:
        await aio.aclose()


def test_two_deployments_naming_their_service_alike_are_no_move(tmp_path, caplog):
    """A process that talks to two Sentinel deployments whose services share a name logs no
    move of the primary when it connects to one, then the other, then the first again."""
    first = SentinelGroup(tmp_path / "first", replicas=0)
    second = SentinelGroup(tmp_path / "second", replicas=0)
    try:
        first.wait_until_ready()
        second.wait_until_ready()
        for group in (first, second, first):
            client = connection.make_client(group.url)
            assert client.ping()
            client.close()
    finally:
        first.stop()
        second.stop()
    assert "moved from" not in caplog.text
