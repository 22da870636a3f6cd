"""TLS: ``rediss://`` URLs with redis-py's certificate parameters, against a real redis-server
listening only on ``--tls-port`` and asking for client certificates."""

import logging
import subprocess
import sys
from urllib.parse import quote

import pytest
import redis as redis_py

from forkq import client as forkq_client
from forkq import connection
from harness import free_port
from helpers import wait_for
from redis_nodes import SERVICE, Node, make_certificates
from test_worker import ROOT, TESTS

PASSWORD = "tls-s3cret/pw"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    certificates = make_certificates(directory / "certs")
    port = free_port()
    node = Node(directory / "server", port, "--port", "0", "--tls-port", str(port),
                "--tls-cert-file", certificates["server.crt"],
                "--tls-key-file", certificates["server.key"],
                "--tls-ca-cert-file", certificates["ca.crt"], "--tls-auth-clients", "yes")
    node.certificates = certificates
    yield node
    node.stop()


def tls_url(server, ca="ca.crt", user="", host="127.0.0.1"):
    certificates = server.certificates
    login = f"{user}:{quote(PASSWORD, safe='')}@" if user else ""
    return (f"rediss://{login}{host}:{server.port}/0?ssl_ca_certs={certificates[ca]}"
            f"&ssl_certfile={certificates['client.crt']}"
            f"&ssl_keyfile={certificates['client.key']}&ssl_cert_reqs=required")


@pytest.fixture
def tls_redis(tls_server, redis, redis_url):
    client = connection.make_client(tls_url(tls_server))
    client.flushall()
    forkq_client.configure(redis_url=tls_url(tls_server))
    yield client
    forkq_client.configure(redis_url=redis_url)
    client.close()


def test_a_worker_and_a_producer_round_trip_a_job_over_tls(tls_server, tls_redis, start_worker):
    import jobs

    start_worker(redis_url=tls_url(tls_server), require=["jobs"])
    jobs.Record.perform_async("over tls")
    jobs.Record.perform_in(0.2, "scheduled over tls")
    wait_for(lambda: len(tls_redis.lrange("ran", 0, -1)) == 2, timeout=15)
    assert sorted(tls_redis.lrange("ran", 0, -1)) == ["over tls", "scheduled over tls"]


def test_the_server_refuses_a_plain_connection(tls_server):
    with pytest.raises(redis_py.ConnectionError):
        connection.make_client(f"redis://127.0.0.1:{tls_server.port}/0",
                               socket_timeout=2).ping()


def test_a_wrong_ca_gives_one_line_naming_the_url_without_the_password(tls_server, tmp_path):
    url = tls_url(tls_server, ca="other-ca.crt", user="app")
    with pytest.raises(redis_py.ConnectionError) as raised:
        connection.make_client(url).ping()
    message = str(raised.value)
    assert "\n" not in message and PASSWORD not in message and quote(PASSWORD, safe="") not in message
    assert f"rediss://app:***@127.0.0.1:{tls_server.port}/0" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message


def test_a_worker_with_a_wrong_ca_stops_with_that_line(tls_server, tmp_path):
    url = tls_url(tls_server, ca="other-ca.crt", user="app")
    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: '{url}'\nrequire: [jobs]\n")
    env = {"PYTHONPATH": f"{ROOT}:{TESTS}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "forkq.worker", "-c", str(config)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert PASSWORD not in output and quote(PASSWORD, safe="") not in output
    (line,) = [text for text in output.splitlines() if "CERTIFICATE_VERIFY_FAILED" in text]
    assert f"rediss://app:***@127.0.0.1:{tls_server.port}/0" in line


def test_the_host_name_is_checked_against_the_certificate(tls_server):
    client = connection.make_client(tls_url(tls_server, host="localhost"))
    assert client.ping()
    client.close()


def test_a_sentinel_url_over_tls_reaches_the_primary_through_a_tls_sentinel(tls_server,
                                                                            tmp_path):
    certificates = tls_server.certificates
    port = free_port()
    tls = (f"tls-cert-file {certificates['server.crt']}\n"
           f"tls-key-file {certificates['server.key']}\n"
           f"tls-ca-cert-file {certificates['ca.crt']}\ntls-replication yes\n")
    sentinel = Node(tmp_path / "sentinel", port, "--port", "0", "--tls-port", str(port),
                    "--sentinel", config=(f"{tls}sentinel monitor {SERVICE} 127.0.0.1 "
                                          f"{tls_server.port} 1\n"))
    query = tls_url(tls_server).partition("?")[2]
    try:
        client = connection.make_client(
            f"rediss+sentinel://127.0.0.1:{port}/{SERVICE}/0?{query}")
        client.set("through", "sentinel")
        assert client.get("through") == "sentinel"
        assert client.connection_pool.get_master_address() == ("127.0.0.1", tls_server.port)
        client.close()
    finally:
        sentinel.stop()


def test_a_url_without_certificate_checks_is_warned_about_once_without_its_password(
        tls_server, caplog):
    """``ssl_cert_reqs=none`` works (tests), but anyone on the path can then pose as the
    server: said once per process, at the first client, naming the URL, never the password."""
    url = tls_url(tls_server, user="app").replace("ssl_cert_reqs=required",
                                                  "ssl_cert_reqs=none")
    with caplog.at_level(logging.WARNING, logger="forkq"):
        for _ in range(3):
            client = connection.make_client(url)
            client.close()
    warnings = [r.getMessage() for r in caplog.records if "ssl_cert_reqs=none" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "rediss://app:***@127.0.0.1" in warnings[0] and "not verified" in warnings[0]
    assert quote(PASSWORD, safe="") not in warnings[0] and PASSWORD not in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="forkq"):
        connection.make_client(tls_url(tls_server, user="app")).close()
    assert not caplog.records
