"""ACL users: each role (worker, producer, read-only web UI) works with exactly the rule that
docs/guides/production-redis.md gives it, on a real redis-server, and a password never reaches
a log or an error."""

import json
import shlex
import signal
import time

import pytest
import redis as redis_py

from forkq import client as forkq_client
from forkq import connection
from forkq.web.app import App
from harness import free_port
from helpers import wait_for
from redis_nodes import Node
from test_web import PAGES, Browser
from test_worker import log_text, spawn

#: the rules as docs/guides/production-redis.md gives them (keep the two in step)
WORKER_RULE = ("~* -@all +ping +select +info +time +evalsha +eval +script|load "
               "+blmove +brpop +rpop +lpush +rpush +lrange +lindex +lrem +llen +del +exists "
               "+expire +pexpire +get +set +incrby +scan +sadd +srem +smembers +hset +hsetnx "
               "+hincrby +hget +hmget +hgetall +hdel +zadd +zrem +zcard +zrangebyscore +zremrangebyscore "
               "+zremrangebyrank +bitfield +multi +exec")
#: each write command on the keys it is for only (Redis 7 selectors): a producer cannot write
#: over ``retry``, ``dead``, the process records or the periodic lease
PRODUCER_RULE = ('resetkeys -@all +select ~queues ~queue:* ~schedule "(+sadd ~queues)" '
                 '"(+lpush ~queue:*)" "(+zadd ~schedule)"')
#: what unique jobs (the lock) and result_ttl (the queued record) add to a producer's rule
PRODUCER_EXTRAS = ('+evalsha +eval ~forkq:unique:* ~forkq:result:* '
                   '"(+set ~forkq:unique:* ~forkq:result:*)" "(+del ~forkq:unique:*)"')
#: the closest rule on Redis 6.2, which has no selectors: it still lets a producer SET or DEL
#: a queue key or a result record, nothing else of the list below
PRODUCER_RULE_6_2 = ("resetkeys -@all +select +sadd +lpush +zadd +set +del +evalsha +eval "
                     "~queues ~queue:* ~schedule ~forkq:unique:* ~forkq:result:*")
WEB_READ_ONLY_RULE = "~* +@read"
PASSWORD = "acl-pa55/word"


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory):
    node = Node(tmp_path_factory.mktemp("acl"), free_port())
    yield node
    node.stop()


@pytest.fixture
def admin(acl_server, redis, redis_url):
    """The default user on an empty database; the roles' users are removed afterwards."""
    client = acl_server.client()
    client.flushall()
    client.acl_log_reset()
    yield client
    for user in client.acl_users():
        if user != "default":
            client.acl_deluser(user)
    forkq_client.configure(redis_url=redis_url)
    client.close()


def user_url(server, admin, name: str, rule: str) -> str:
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{PASSWORD}",
                          *shlex.split(rule))
    return f"redis://{name}:{PASSWORD.replace('/', '%2F')}@127.0.0.1:{server.port}/0"


def denied(admin) -> list:
    return [(entry["username"], entry["object"]) for entry in admin.acl_log()]


def job(klass: str, *args, jid: str, **extra) -> str:
    return json.dumps({"class": klass, "args": list(args), "jid": jid.ljust(24, "0"),
                       "queue": "default", "retry": True, **extra})


@pytest.mark.slow
@pytest.mark.fault
def test_a_worker_with_the_worker_rule_runs_retries_polls_beats_and_recovers(
        acl_server, admin, tmp_path):
    url = user_url(acl_server, admin, "worker", WORKER_RULE)
    first = spawn(tmp_path, url, "first.log")
    admin.lpush("queue:default", job("jobs.slow", "victim", 60, jid="victim"))
    wait_for(lambda: admin.lrange("started", 0, -1) == ["victim"], timeout=15)
    first.kill()
    first.wait()
    admin.delete("started")
    due = time.time() - 1
    admin.zadd("schedule", {job("jobs.Record", "scheduled", jid="s"): due})
    admin.zadd("retry", {job("jobs.Record", "retried", jid="r", retry_count=0): due})
    admin.lpush("queue:default", job("jobs.Record", "plain", jid="p"),
                job("jobs.explode", "boom", jid="e"))
    second = spawn(tmp_path, url, "second.log", timeout=1)
    try:
        wait_for(lambda: admin.lrange("started", 0, -1) == ["victim"] and {
            "scheduled", "retried", "plain"} <= set(admin.lrange("ran", 0, -1)), timeout=30,
            message="every job to run, the killed one recovered: " + str(denied(admin)))
        wait_for(lambda: admin.zcard("retry") == 1, timeout=10, message="the failure retried")
        wait_for(lambda: beating(admin, second.pid), message="the heartbeat")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    assert denied(admin) == []
    logs = log_text(tmp_path, "first.log") + log_text(tmp_path, "second.log")
    assert "whose heartbeat expired" in logs
    assert PASSWORD not in logs and "pa55" not in logs


def beating(admin, pid: int) -> bool:
    return any(json.loads(admin.hget(identity, "info") or "{}").get("pid") == pid
               for identity in admin.smembers("processes"))


def test_a_producer_with_the_producer_rule_enqueues_schedules_and_bulk(acl_server, admin):
    import jobs

    forkq_client.configure(redis_url=user_url(acl_server, admin, "producer", PRODUCER_RULE))
    jobs.Record.perform_async("now")
    jobs.Record.perform_in(60, "later")
    jobs.Record.perform_bulk([[i] for i in range(5)])
    forkq_client.default().close()
    assert denied(admin) == []
    assert admin.llen("queue:default") == 6 and admin.zcard("schedule") == 1


def test_unique_and_result_keeping_jobs_need_only_the_producer_rule_plus_its_extras(
        acl_server, admin):
    import jobs

    rule = PRODUCER_RULE + " " + PRODUCER_EXTRAS
    forkq_client.configure(redis_url=user_url(acl_server, admin, "producer", rule))
    assert jobs.Record.set(unique_for=60).perform_async("once") is not None
    assert jobs.Record.set(unique_for=60).perform_async("once") is None
    jobs.Record.set(unique_for=60).perform_bulk([["a"], ["b"]])
    jobs.Record.set(result_ttl=60).perform_async("kept")
    forkq_client.default().close()
    assert denied(admin) == []
    assert admin.llen("queue:default") == 4 and admin.keys("forkq:result:*")


def test_the_asyncio_client_needs_no_more_than_the_producer_rule(acl_server, admin):
    import asyncio

    import jobs
    from forkq import aio

    rule = PRODUCER_RULE + " " + PRODUCER_EXTRAS
    forkq_client.configure(redis_url=user_url(acl_server, admin, "producer", rule))

    async def main():
        try:
            await jobs.Record.aperform_async("now")
            await jobs.Record.set(unique_for=60).aperform_async("once")
            await jobs.Record.set(result_ttl=60).aperform_async("kept")
            await jobs.Record.aperform_in(60, "later")
        finally:
            await aio.aclose()
    asyncio.run(main())
    assert denied(admin) == []
    assert admin.llen("queue:default") == 3 and admin.zcard("schedule") == 1


#: writes the producer rule must refuse: over a queue, the retry and dead sets, the process
#: records and the periodic lease (which with no TTL stopped periodic jobs for good)
HOSTILE_WRITES = [
    ("SET", "queue:default", "x"),
    ("DEL", "queue:default"),
    ("DEL", "dead"),
    ("ZADD", "dead", "1", "x"),
    ("LPUSH", "retry", "x"),
    ("SADD", "processes", "queue:x"),
    ("HSET", "forkq:periodic:cursor", "e", "9e99"),
    ("SET", "forkq:periodic:leader", "x"),
    ("SET", "forkq:periodic:tick:e:1", "x"),
    ("DEL", "forkq:result:x"),
]


@pytest.mark.parametrize("rule, command", [
    *(pytest.param(PRODUCER_RULE + " " + PRODUCER_EXTRAS, command, id=" ".join(command))
      for command in HOSTILE_WRITES),
    *(pytest.param(PRODUCER_RULE_6_2, command, id="6.2 " + " ".join(command))
      for command in HOSTILE_WRITES[2:-1]),
])
def test_the_producer_rule_with_its_extras_cannot_write_beyond_pushing(acl_server, admin,
                                                                       rule, command):
    producer = connection.make_client(user_url(acl_server, admin, "producer", rule))
    admin.lpush("queue:default", "job")
    admin.zadd("dead", {"corpse": 1})
    admin.set("forkq:periodic:leader", "host:1:abc", px=5000)
    with pytest.raises(redis_py.exceptions.NoPermissionError):
        producer.execute_command(*command)
    script = "return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))"
    with pytest.raises(redis_py.exceptions.ResponseError, match="(?i)permission|can.t access"):
        producer.eval(script, 1, command[1], command[0], *command[2:])
    assert admin.lrange("queue:default", 0, -1) == ["job"] and admin.zcard("dead") == 1
    assert admin.get("forkq:periodic:leader") == "host:1:abc"
    producer.close()


def test_the_producer_rule_cannot_read_jobs(acl_server, admin):
    producer = connection.make_client(user_url(acl_server, admin, "producer", PRODUCER_RULE))
    with pytest.raises(redis_py.exceptions.NoPermissionError):
        producer.lrange("queue:default", 0, -1)


def test_the_read_only_web_ui_serves_every_page_to_a_read_user(acl_server, admin, make_config):
    import test_web
    from forkq.api import Api

    test_web.seed(admin, Api(admin))
    url = user_url(acl_server, admin, "viewer", WEB_READ_ONLY_RULE)
    viewer = Browser(App(make_config(redis_url=url, web={"read_only": True}), None, environ={}))
    statuses = {path: viewer.get(path).status for path in PAGES}
    assert statuses == {path: 200 for path in PAGES}, denied(admin)
    assert set(denied(admin)) <= {("viewer", "info")}, "INFO only: the dashboard shows '?'"


def test_a_refused_login_names_the_url_without_the_password(acl_server, admin):
    url = user_url(acl_server, admin, "worker", WORKER_RULE).replace(PASSWORD.replace("/", "%2F"),
                                                                      "wrong-pa55")
    with pytest.raises(redis_py.AuthenticationError) as raised:
        connection.make_client(url).ping()
    assert "pa55" not in str(raised.value)
