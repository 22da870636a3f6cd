"""Redis URLs (parsing, redaction, refusals) and the clients made from them: errors that name
the URL without its password, and ``wait_replicas`` on a server without replicas."""

import logging
import os
import signal
import threading
import time

import pytest
import redis as redis_py

from forkq import config, connection
from forkq.connection import urls as redis_url
from forkq.connection import embedded
from forkq.connection.embedded import EmbeddedRedis
from forkq.errors import ConfigError

import harness
from helpers import stop_process, wait_for

PARSED = [
    ("redis://localhost:6380/2", {"host": "localhost", "port": 6380, "db": 2, "ssl": False}),
    ("redis://worker:p%40ss@h:1/0", {"username": "worker", "password": "p@ss", "host": "h"}),
    ("rediss://h:1/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=none&ssl_check_hostname=false",
     {"ssl": True, "ssl_ca_certs": "/ca.pem", "ssl_cert_reqs": "none",
      "ssl_check_hostname": False}),
    ("unix:///run/redis.sock?db=3", {"path": "/run/redis.sock", "db": 3}),
    ("redis://h:1/0?socket_timeout=2.5", {"socket_timeout": 2.5}),
    ("redis+sentinel://u:pw@a:26379,b:26380/mymaster/4?socket_timeout=1",
     {"username": "u", "password": "pw", "db": 4, "ssl": False, "socket_timeout": 1.0}),
    ("rediss+sentinel://a:1/svc?ssl_ca_certs=/ca.pem", {"ssl": True, "db": 0}),
]


@pytest.mark.parametrize("url, expected", PARSED)
def test_urls_give_connection_options(url, expected):
    options = redis_url.parse(url).options
    assert {key: options.get(key) for key in expected} == expected


def test_a_sentinel_url_names_its_sentinels_service_and_their_login():
    target = redis_url.parse("redis+sentinel://a:1,[::1]:2/svc?sentinel_password=s3&"
                             "sentinel_username=watch&wait_replicas=1&wait_timeout=0.5")
    assert target.sentinels.addresses == (("a", 1), ("::1", 2))
    assert target.sentinels.service == "svc"
    assert target.sentinels.options == {"username": "watch", "password": "s3"}
    assert (target.wait_replicas, target.wait_timeout) == (1, 0.5)


REFUSED = [
    ("http://h:1", "unknown scheme 'http'"),
    ("redis://h:1?sokcet_timeout=1", "unknown query parameter 'sokcet_timeout'"),
    ("redis://h:1?ssl_ca_certs=/ca.pem", "ssl_* parameters need a rediss:// URL"),
    ("redis+sentinel://a:1/s?ssl_ca_certs=/ca.pem", "need a rediss+sentinel:// URL"),
    ("redis://h:1?sentinel_password=x", "sentinel_* parameters need a redis+sentinel://"),
    ("redis+sentinel://a:1", "expected redis+sentinel://[user:password@]host:port"),
    ("redis+sentinel://a:1/svc/zero", "expected redis+sentinel://"),
    ("redis+sentinel://a/svc", "sentinel address 'a' is not host:port"),
    ("redis+sentinel://a:70000/svc", "sentinel address 'a:70000' is not host:port"),
    ("redis://h:1?wait_replicas=two", "wait_replicas must be a whole number"),
    ("redis://h:1?wait_replicas=1&wait_timeout=0", "wait_timeout a finite number of seconds"),
    ("redis://h:1?wait_replicas=1&wait_timeout=nan", "finite number of seconds >= 0.001"),
    ("redis://h:1?wait_replicas=1&wait_timeout=inf", "finite number of seconds >= 0.001"),
    ("redis://h:1?wait_replicas=1&wait_timeout=1e-9", "finite number of seconds >= 0.001"),
    ("redis+sentinel://h:1/svc?db=3", "takes its db in the path (/service_name/db)"),
    ("redis://:pw@host/x", "the db in the path must be a number"),
    ("rediss://h:1/0?ssl_cert_reqs=bogus", "ssl_cert_reqs='bogus' is not valid"),
    ("redis://h:1?socket_timeout=soon", "socket_timeout='soon' is not valid"),
    ("redis://h:1?socket_timeout=0", "socket_timeout='0' is not a positive number of seconds"),
    ("redis://h:1?socket_timeout=inf", "socket_timeout='inf' is not a positive number"),
    ("redis://h:1?socket_timeout=nan", "socket_timeout='nan' is not a positive number"),
    ("unix:///r.sock?socket_timeout=-1", "socket_timeout='-1' is not a positive number"),
    ("redis://h:1?socket_connect_timeout=0", "socket_connect_timeout='0' is not a positive"),
    ("redis://h:1?socket_timeout=1e12", "is not a positive number of seconds up to 3153600000"),
]


@pytest.mark.parametrize("url, reason", REFUSED)
def test_unusable_urls_are_refused_with_the_reason(url, reason):
    with pytest.raises(redis_url.RedisURLError, match=r"^Redis URL .*") as raised:
        redis_url.parse(url)
    assert reason in str(raised.value)


REDACTED = [
    ("redis://user:secret@h:1/0", "redis://user:***@h:1/0"),
    ("redis://:secret@h:1/0", "redis://:***@h:1/0"),
    ("rediss://u:p@ss:w@rd@h:1/0", "rediss://u:***@h:1/0"),
    ("redis+sentinel://u:secret@a:1,b:2/svc?sentinel_password=other&db=1",
     "redis+sentinel://u:***@a:1,b:2/svc?sentinel_password=***&db=1"),
    ("rediss://h:1/0?ssl_password=key-secret", "rediss://h:1/0?ssl_password=***"),
    ("redis://user@h:1/0", "redis://user@h:1/0"),
    ("redis://user:pa?ss@host/0", "redis://user:***@host/0"),
    ("redis://user:pa#ss@host/0", "redis://user:***@host/0"),
    ("redis://user:pa/ss@host/0", "redis://user:***@host/0"),
    ("redis://:pw@h:1/0?client_name=a@b&ssl_password=k",
     "redis://:***@h:1/0?client_name=a@b&ssl_password=***"),
    ("redis://h:1/0?password=p&db=1", "redis://h:1/0?password=***&db=1"),
    ("redis://h:1/0?Sentinel_Password=p", "redis://h:1/0?Sentinel_Password=***"),
    ("redis://h:1/0?pass%77ord=p", "redis://h:1/0?pass%77ord=***"),
]


@pytest.mark.parametrize("url, shown", REDACTED)
def test_passwords_are_hidden_wherever_a_url_is_shown(url, shown):
    assert redis_url.redact(url) == shown


@pytest.mark.parametrize("url", ["redis://user:pa?ssw0rd@host/0", "redis://u:ab#cd@h/0"])
def test_a_malformed_url_is_refused_in_forkqs_words_without_its_password(url):
    with pytest.raises(redis_url.RedisURLError) as raised:
        redis_url.parse(url)
    password = url.split("://")[1].split(":", 1)[1].rsplit("@", 1)[0]
    assert password not in str(raised.value) and "percent-encode" in str(raised.value)


def test_wait_timeout_and_ssl_cert_reqs_that_are_valid_still_parse():
    target = redis_url.parse(
        "rediss://h:1/2?wait_replicas=1&wait_timeout=0.001&ssl_cert_reqs=none")
    assert (target.wait_timeout, target.options["db"], target.options["ssl_cert_reqs"]) == \
        (0.001, 2, "none")


def test_a_refused_url_never_shows_its_password():
    with pytest.raises(redis_url.RedisURLError) as raised:
        redis_url.parse("redis://u:topsecret@h:1?sentinel_password=alsosecret")
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize("url", [
    "redis://h:6379/0?password=hunter2",
    "redis://h/0?PASSWORD=hunter2",
    "redis://h/0?pass%77ord=hunter2",
    "redis://h/0?passwd=hunter2",
    "redis://h/0?token=hunter2",
    "rediss+sentinel://h:1/svc?password=hunter2",
    "redis://h/0?socket_timeout=1&password=hunter2#x",
    "redis://h/0?password=hunter2&wait_replicas=x",
    "redis://u:hun?ter2=1@h:1/0",
])
def test_a_password_given_as_a_query_parameter_is_refused_without_showing_it(url):
    with pytest.raises(redis_url.RedisURLError) as raised:
        redis_url.parse(url)
    assert "hunter2" not in str(raised.value) and "ter2" not in str(raised.value)
    assert "***" in str(raised.value)


def test_a_password_parameter_is_refused_with_where_the_password_goes():
    with pytest.raises(redis_url.RedisURLError, match=r"password=\*\*\*: .*in the URL's login"):
        redis_url.parse("redis://h:6379/0?password=hunter2")


def test_config_accepts_sentinel_urls_and_hides_passwords_in_its_errors():
    url = "redis+sentinel://u:pw@a:1,b:2/svc"
    assert config.from_mapping({"redis_url": url}, "forkq.yml").redis_url == url
    with pytest.raises(ConfigError) as raised:
        config.from_mapping({"redis_url": "redis://u:topsecret@h:1?bogus=1"}, "forkq.yml")
    assert "topsecret" not in str(raised.value)
    assert "redis://u:***@h:1?bogus=1" in str(raised.value)
    assert "unknown query parameter 'bogus'" in str(raised.value)


def test_a_connection_error_names_the_url_without_the_password():
    client = connection.make_client("redis://app:topsecret@127.0.0.1:1/0",
                                    socket_connect_timeout=1)
    with pytest.raises(redis_py.ConnectionError) as raised:
        client.ping()
    assert str(raised.value).startswith("redis://app:***@127.0.0.1:1/0: Error 111")
    assert "topsecret" not in str(raised.value)


def test_a_push_confirmed_by_too_few_replicas_raises_after_writing(redis, redis_url):
    client = connection.make_client(redis_url + "?wait_replicas=1&wait_timeout=0.05")
    with pytest.raises(connection.ReplicaTimeoutError, match="confirmed by 0 of 1 replica"):
        connection.send_commands(client, [("LPUSH", "queue:default", "job")])
    assert redis.llen("queue:default") == 1, "the write stands on the primary"
    client.close()


def test_a_shared_client_waits_for_replicas_too(redis, redis_url):
    client = connection.make_shared_client(redis_url + "?wait_replicas=1&wait_timeout=0.05")
    with pytest.raises(connection.ReplicaTimeoutError):
        connection.send_commands(client, [("SADD", "queues", "default")])
    client.close()


def test_without_wait_replicas_nothing_waits(redis, redis_url):
    client = connection.make_client(redis_url)
    assert connection.send_commands(client, [("LPUSH", "queue:default", "job")]) == [1]
    held = client.connection_pool.get_connection()
    assert connection.call_replicated(client, held, "LLEN", "queue:default") == 1
    client.connection_pool.release(held)
    client.close()


def test_a_fetch_acknowledgement_short_of_replicas_is_logged_once_and_not_raised(
        redis, redis_url, caplog, monkeypatch):
    monkeypatch.setattr(connection, "replicas", connection.ReplicaWatch())
    client = connection.make_client(redis_url + "?wait_replicas=1&wait_timeout=0.02")
    held = client.connection_pool.get_connection()
    with caplog.at_level(logging.WARNING, logger="forkq"):
        for _ in range(3):
            assert connection.call_replicated(client, held, "PING") == "PONG"
    client.connection_pool.release(held)
    client.close()
    assert [r.getMessage() for r in caplog.records].count(
        "Redis replicas confirm fewer writes than wait_replicas=1 (0 did): acknowledgements "
        "may be undone by a failover, and jobs run again") == 1


def test_an_error_reply_leaves_the_connection_in_step_for_a_retry(redis, redis_url):
    """The fetch retries on the same connection after NOSCRIPT: the WAIT's reply must not be
    taken for the retry's."""
    client = connection.make_client(redis_url + "?wait_replicas=1&wait_timeout=0.02")
    held = client.connection_pool.get_connection()
    with pytest.raises(redis_py.exceptions.NoScriptError):
        connection.call_replicated(client, held, "EVALSHA", "0" * 40, 0)
    assert connection.call_replicated(client, held, "ECHO", "mine") == "mine"
    client.connection_pool.release(held)
    client.close()


def test_a_timeout_in_the_url_wins_over_forkqs_default():
    client = connection.make_client("redis://127.0.0.1:1/0?socket_timeout=2.5")
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 2.5
    assert connection.make_client("redis://127.0.0.1:1/0").connection_pool.connection_kwargs[
        "socket_timeout"] == connection.SOCKET_TIMEOUT


@pytest.fixture(params=["tcp", "unix"])
def own_server(request, tmp_path):
    """A redis-server of the test's own, on loopback TCP or a Unix socket: ``(url, pid)``."""
    server = harness.Server() if request.param == "tcp" else EmbeddedRedis(str(tmp_path)).start()
    yield server.url, server.process.pid
    os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


@pytest.mark.fault
def test_a_redis_that_stops_answering_times_out_and_is_reconnected_after(own_server):
    """The timeout is kept by the kernel, not by a poll before each call: a Redis stopped
    mid-run still ends the wait as ``TimeoutError`` within ``socket_timeout``, and the
    connection is dropped, so the next command after it answers again runs on a fresh one."""
    url, pid = own_server
    client = connection.make_client(url + "?socket_timeout=0.3")
    assert client.ping()
    held = client.connection_pool.get_connection()
    assert held.kernel_timeout == 0.3 and held._sock.gettimeout() is None
    client.connection_pool.release(held)
    stop_process(pid)
    started = time.monotonic()
    with pytest.raises(redis_py.TimeoutError, match="^Timeout reading from "):
        client.ping()
    assert 0.25 < time.monotonic() - started < 5
    os.kill(pid, signal.SIGCONT)
    assert client.ping()
    client.close()


def test_a_maintenance_relaxation_undone_leaves_the_timeout_to_the_kernel():
    """A server's maintenance notice makes redis-py relax a TCP connection's timeout in
    Python for a while, then restore the original: that original is the kernel's."""
    server = harness.Server()
    try:
        client = connection.make_client(server.url)
        held = client.connection_pool.get_connection()
        held.set_tmp_settings(tmp_relaxed_timeout=30)
        held.update_current_socket_timeout(30)
        held.reset_tmp_settings(reset_relaxed_timeout=True)
        held.update_current_socket_timeout(-1)
        held.disconnect()
        held.connect()
        assert held._sock.gettimeout() is None
        assert held.kernel_timeout == connection.SOCKET_TIMEOUT
        client.connection_pool.release(held)
        client.close()
    finally:
        server.stop()


@pytest.mark.fault
def test_a_send_that_a_stopped_redis_never_takes_times_out(own_server):
    url, pid = own_server
    client = connection.make_client(url + "?socket_timeout=0.3")
    assert client.ping()
    stop_process(pid)
    started = time.monotonic()
    with pytest.raises(redis_py.TimeoutError, match="^Timeout writing to "):
        client.set("big", b"x" * 64 * 1024 * 1024)  # far more than a socket's buffers hold
    assert time.monotonic() - started < 5
    client.close()


def test_forkqctl_status_shows_where_it_looked_without_passwords():
    from forkq import ctl

    settings = config.from_mapping({"redis_url": "redis+sentinel://u:topsecret@a:1/svc"
                                                 "?sentinel_password=alsosecret"}, "forkq.yml")
    assert ctl.redis_location(settings) == "redis+sentinel://a:1/svc?sentinel_password=***"


# --- the shared client's pool: ready connections, waiters, fork ------------------------------

def test_a_pooled_connection_is_reused_and_reconnected_when_the_server_closed_it(redis,
                                                                                redis_url):
    shared = connection.make_shared_client(redis_url)
    try:
        assert connection.send_commands(shared, [("CLIENT", "ID")]) == \
            connection.send_commands(shared, [("CLIENT", "ID")])
        redis.client_kill_filter(_type="normal", skipme=True)
        assert connection.send_commands(shared, [("PING",)]) == ["PONG"]
    finally:
        shared.close()


def test_a_thread_waiting_for_the_pool_gets_the_connection_given_back(redis_url, monkeypatch):
    monkeypatch.setattr(connection, "POOL_SIZE", 1)
    monkeypatch.setattr(connection, "POOL_WAIT", 10.0)
    shared = connection.make_shared_client(redis_url)
    pool = shared.connection_pool
    held = pool.get_connection()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(pool.get_connection()))
    waiter.start()
    wait_for(lambda: pool._waiting == 1, timeout=5, message="a thread waiting for the pool")
    started = time.monotonic()
    pool.release(held)
    waiter.join(5)
    try:
        assert got == [held] and time.monotonic() - started < 5
        pool.release(got[0])
        assert connection.send_commands(shared, [("PING",)]) == ["PONG"]
    finally:
        shared.close()


def test_a_forked_child_uses_the_shared_pool_without_the_parents_connections(redis_url):
    shared = connection.make_shared_client(redis_url)
    parent_id = connection.send_commands(shared, [("CLIENT", "ID")])[0]
    pid = os.fork()
    if pid == 0:
        try:
            child_id = connection.send_commands(shared, [("CLIENT", "ID")])[0]
            os._exit(0 if child_id != parent_id else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert connection.send_commands(shared, [("CLIENT", "ID")]) == [parent_id]
    shared.close()


def test_closing_the_idle_connections_closes_the_ready_ones_too(redis, redis_url):
    shared = connection.make_shared_client(redis_url)
    try:
        connection.send_commands(shared, [("CLIENT", "SETNAME", "forkq-ready")])
        named = lambda: [c for c in redis.client_list() if c["name"] == "forkq-ready"]  # noqa: E731
        assert len(named()) == 1
        shared.connection_pool.disconnect(inuse_connections=False)
        wait_for(lambda: not named(), timeout=5, message="the ready connection closed")
        assert connection.send_commands(shared, [("PING",)]) == ["PONG"]
    finally:
        shared.close()


def _aof_path(data_dir: str) -> str:
    folder = os.path.join(data_dir, "appendonlydir")
    if os.path.isdir(folder):  # Redis 7: the last incremental file
        return os.path.join(folder, sorted(f for f in os.listdir(folder) if ".incr." in f)[-1])
    return os.path.join(data_dir, "appendonly.aof")


def _script_written(data_dir: str) -> bool:
    """Whether the append-only file holds the script's transaction: with ``everysec``, Redis
    may answer before it writes the file, while its last fsync is still running."""
    with open(_aof_path(data_dir), "rb") as handle:
        data = handle.read()
    return b"MULTI" in data and b"RPOP" in data[data.rindex(b"MULTI"):]


def _cut_inside_last_transaction(data_dir: str) -> None:
    """Leave the append-only file as a crash while writing the last transaction (a script's
    effects) would: its ``MULTI`` and first commands whole, the next one cut short."""
    path = _aof_path(data_dir)
    with open(path, "rb") as handle:
        data = handle.read()
    second_command = data.index(b"*", data.index(b"RPOP", data.rindex(b"MULTI")) + 1)
    with open(path, "wb") as handle:
        handle.write(data[:second_command + 3])


@pytest.mark.fault
def test_an_embedded_redis_killed_mid_transaction_keeps_the_writes_of_its_next_life(tmp_path):
    data_dir = str(tmp_path)
    server = EmbeddedRedis(data_dir).start()
    client = redis_py.Redis.from_url(server.url, decode_responses=True)
    client.rpush("queue", "a", "b", "c")
    client.eval("redis.call('RPOP', KEYS[1]); redis.call('RPOP', KEYS[1]); "
                "redis.call('RPUSH', KEYS[2], 'c', 'b')", 2, "queue", "held")
    wait_for(lambda: _script_written(data_dir), 10, message="the script in the append-only file")
    server.process.kill()
    server.process.wait()
    _cut_inside_last_transaction(data_dir)
    server = EmbeddedRedis(data_dir).start()  # cuts the half command, rewrites the file
    client.rpush("queue", "d")
    server.process.kill()
    server.process.wait()
    server = EmbeddedRedis(data_dir).start()
    try:
        # Without the rewrite, this start drops "d" with the unfinished transaction.
        assert client.lrange("queue", 0, -1) == ["a", "b", "c", "d"]
        assert client.exists("held") == 0
    finally:
        client.close()
        server.stop()


def test_a_truncated_file_being_rewritten_already_is_waited_for_not_refused(tmp_path):
    server = EmbeddedRedis(str(tmp_path)).start()
    client = redis_py.Redis.from_url(server.url)
    try:
        pipe = client.pipeline(transaction=False)
        for index in range(200):  # a rewrite long enough to be running at the next call
            pipe.set(f"key{index}", "v" * 100_000)
        pipe.execute()
        log_path = str(tmp_path / "redis.log")
        since = embedded.log_size(log_path)
        with open(log_path, "a") as log:  # as a start that cut a half command off would log
            log.write(f"{embedded.TRUNCATED_AOF} at offset 144 !!!\n")
        client.bgrewriteaof()
        assert embedded.settle_truncated_aof(client, log_path, since)
        assert client.info("persistence")["aof_rewrite_in_progress"] == 0
    finally:
        client.close()
        server.stop()
