"""The web UI as a client meets it: a real ``forkq web`` server over real sockets, real Redis.

Host and Origin checks (DNS rebinding), pages over whatever Redis holds (bad timestamps, odd
queue names, 2 MiB jobs), read-only mode under a Redis user that may only read, security
headers on errors, idle connections, password guessing, and the line ``forkq web`` prints.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from html import unescape
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
import redis as redis_py

from forkq.api import Api, Entry
from forkq.web import security, server as web_server
from forkq.web.http import segment
from helpers import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECURITY_HEADERS = {"Content-Security-Policy": "frame-ancestors 'none'",
                    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                    "Cache-Control": "no-store"}


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()
        self.text = self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def form_token(self) -> str:
        return re.search(r'name="csrf" value="([^"]*)"', self.text).group(1)

    def cookie(self) -> str:
        return self.header("Set-Cookie").split(";")[0]


class Client:
    """HTTP to one server, with the Host, Origin and source address a test chooses."""

    def __init__(self, port: int, host: str | None = None, source: str = "127.0.0.1",
                 auth: tuple[str, str] | None = None) -> None:
        self.port = port
        self.host = host or f"127.0.0.1:{port}"
        self.source = source
        self.auth = auth
        self.cookie: str | None = None

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                                source_address=(self.source, 0))
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            sent = {"Host": self.host, "Content-Length": str(len(body)), **(headers or {})}
            if body:
                sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
            if self.cookie:
                sent.setdefault("Cookie", self.cookie)
            if self.auth:
                sent["Authorization"] = "Basic " + base64.b64encode(
                    ":".join(self.auth).encode()).decode()
            for name, value in sent.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            reply = Reply(connection.getresponse())
        finally:
            connection.close()
        if reply.header("Set-Cookie"):
            self.cookie = reply.cookie()
        return reply

    def get(self, path: str, **kwargs) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, form: dict | list, page: str | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        """Submits like the page's form: its CSRF token is the cookie's value (the page is
        fetched first when there is no cookie yet)."""
        if self.cookie is None:
            self.get(page or path)
        token = self.cookie.partition("=")[2]
        pairs = list(form.items()) if isinstance(form, dict) else list(form)
        body = urlencode(pairs + [("csrf", token)]).encode()
        return self.request("POST", path, body, headers)


@pytest.fixture
def serve(redis, make_config):
    """Start a real server on a free loopback port; keyword arguments are config keys."""
    running = []

    def start(**values) -> int:
        web = web_server.make_server(make_config(**values), "127.0.0.1:0")
        thread = threading.Thread(target=web.serve_forever, daemon=True)
        thread.start()
        running.append((web, thread))
        return web.server_address[1]

    yield start
    for web, thread in running:
        web.shutdown()
        web.server_close()
        thread.join(5)


@pytest.fixture
def api(redis):
    return Api(redis)


def job(jid: str, queue: str = "default", **fields) -> str:
    return json.dumps({"class": "app.Job", "args": [1], "jid": jid, "queue": queue, **fields})


def push(redis, api: Api, queue: str, text: str) -> None:
    redis.sadd(api.keys.queues, queue)
    redis.lpush(api.keys.queue(queue), text)


def assert_secured(reply: Reply) -> None:
    for name, part in SECURITY_HEADERS.items():
        assert part in (reply.header(name) or ""), (reply.status, name, reply.header(name))


# --- item 11: DNS rebinding -------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "127.0.0.1:{port}",
                                  "127.4.5.6", "[::1]:{port}", "[::1]", "LOCALHOST:{port}"])
def test_loopback_host_names_are_served(serve, host):
    port = serve()
    assert Client(port, host.format(port=port)).get("/").status == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io",
                                  "localhost.evil.example", "10.0.0.1:{port}",
                                  "localhost:abc", "[::1"])
def test_other_host_names_are_refused_on_every_path(serve, host):
    port = serve()
    client = Client(port, host.format(port=port))
    for path in ["/", "/queues", "/stats", "/static/forkq.css", "/nowhere"]:
        reply = client.get(path)
        assert reply.status == 400, (host, path)
        assert_secured(reply)


def test_a_rebinding_page_cannot_clear_a_queue(serve, redis, api):
    """evil.example resolves to 127.0.0.1: the browser sends its own name as Host and Origin,
    and the page can read the CSRF token of the responses it gets."""
    port = serve()
    push(redis, api, "default", job("a" * 24))
    local = Client(port)
    token = local.get("/queues/default").form_token()
    attacker = Client(port, "evil.example")
    attacker.cookie = f"{security.CSRF_COOKIE}={token}"
    reply = attacker.request("POST", "/queues/default",
                             urlencode({"action": "clear", "csrf": token}).encode(),
                             {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"})
    assert reply.status in (400, 403)
    assert api.queue("default").size == 1


def test_origin_must_be_an_allowed_name_and_port(serve, redis, api):
    port = serve()
    push(redis, api, "default", job("a" * 24))
    client = Client(port, f"localhost:{port}")
    for origin in ["http://evil.example", f"http://localhost:{port + 1}", "null"]:
        reply = client.post("/queues/default", {"action": "clear"}, headers={"Origin": origin})
        assert reply.status == 403, origin
        assert_secured(reply)
    assert api.queue("default").size == 1
    reply = client.post("/queues/default", {"action": "clear"},
                        headers={"Origin": f"http://localhost:{port}"})
    assert reply.status == 303 and api.queue("default").size == 0


def test_allowed_hosts_serve_a_proxy_name(serve, redis, api):
    port = serve(web={"allowed_hosts": ["forkq.internal"]})
    push(redis, api, "default", job("a" * 24))
    assert Client(port, "forkq.internal:8443").get("/").status == 200
    assert Client(port, "FORKQ.internal").get("/").status == 200
    assert Client(port, "other.internal").get("/").status == 400
    behind_proxy = Client(port)  # the proxy rewrote Host; the browser's Origin names the proxy
    refused = behind_proxy.post("/queues/default", {"action": "clear"},
                                headers={"Origin": "https://other.internal"})
    assert refused.status == 403 and api.queue("default").size == 1
    accepted = behind_proxy.post("/queues/default", {"action": "clear"},
                                 headers={"Origin": "https://forkq.internal"})
    assert accepted.status == 303 and api.queue("default").size == 0


AUTH = {"username": "admin", "password_hash": security.hash_password("s3cret", 1000)}


def test_with_authentication_any_host_name_may_log_in(serve, monkeypatch):
    monkeypatch.delenv("FORKQ_WEB_USERNAME", raising=False)
    monkeypatch.delenv("FORKQ_WEB_PASSWORD", raising=False)
    port = serve(web=AUTH)
    assert Client(port, "forkq.example.com").get("/").status == 401
    assert Client(port, "forkq.example.com", auth=("admin", "s3cret")).get("/").status == 200


# --- item 12: whatever Redis holds, every page renders -------------------------------------

def seed_odd_data(redis, api: Api) -> None:
    push(redis, api, "default", '{"class":"app.Job","args":[],"jid":"nan0","enqueued_at":NaN}')
    push(redis, api, "default", job("huge", enqueued_at=1e300, created_at="yesterday"))
    push(redis, api, "default", job("ms", enqueued_at=int(time.time() * 1000),
                                    created_at=int(time.time() * 1000) - 5000))
    push(redis, api, "default", '{"class":"app.Job","args":[],"jid":"inf","enqueued_at":-Infinity}')
    push(redis, api, "deep", "[" * 5000 + "]" * 5000)
    for key in (api.keys.schedule, api.keys.retry, api.keys.dead):
        redis.zadd(key, {job("pinf", failed_at="NaN", error_class="E", error_message="m",
                             retry_count=1): math.inf,
                         job("ninf", failed_at=1e300, retried_at=-1e300): -math.inf,
                         job("ms", failed_at=int(time.time() * 1000)): time.time(),
                         '{"class":"app.Job","jid":"n","failed_at":NaN}': 12.5,
                         job("neg", error_class=["E"],
                             error_message={str(n): n for n in range(200)}): -5.0,
                         job("tiny"): 1e-05})
    identity = "host:1:bad"
    redis.sadd(api.keys.processes, identity)
    redis.hset(api.keys.process(identity), mapping={
        "info": json.dumps({"hostname": "host", "pid": 1, "started_at": "yesterday",
                            "concurrency": "many", "queues": "default", "labels": 5}),
        "busy": "x", "beat": "nan", "quiet": "false", "rss": "lots"})
    redis.hset(api.keys.work(identity), mapping={
        "t1": json.dumps({"queue": "default", "run_at": 1e300, "payload": job("w1")}),
        "t2": json.dumps({"queue": "default", "run_at": "soon", "payload": {"jid": "w2"}}),
        "t3": "not json"})


def test_every_page_renders_bad_timestamps_as_raw_values(serve, redis, api):
    seed_odd_data(redis, api)
    port = serve()
    client = Client(port)
    pages = ["/", "/?days=90", "/stats", "/queues", "/queues/default", "/queues/deep", "/busy",
             "/scheduled", "/retries", "/morgue", "/retries?q=inf", "/morgue?q=NaN"]
    for kind, entries in [("scheduled", api.scheduled), ("retries", api.retries),
                          ("morgue", api.dead)]:
        keys = [entry.key for entry in entries.page(0, 100)]
        assert len(keys) == 6 and any(k.startswith("-inf-") for k in keys)
        pages += [f"/{kind}/{segment(key)}" for key in keys]
    for path in pages:
        reply = client.get(path)
        assert reply.status == 200, (path, reply.text[-500:])
    assert "NaN" in client.get("/queues/default").text
    assert "1e+300" in client.get("/queues/default").text
    detail = client.get(f"/morgue/{segment(api.dead.page(0, 1)[0].key)}").text
    assert "inf" in detail and "NaN" in detail, "the raw score and failed_at are shown"
    assert "&#34;yesterday&#34;" in client.get("/busy").text


def test_actions_on_infinite_and_negative_scores(serve, redis, api):
    seed_odd_data(redis, api)
    client = Client(serve())
    for kind, entries in [("retries", api.retries), ("scheduled", api.scheduled)]:
        keys = [e.key for e in entries.page(0, 100) if e.jid in ("pinf", "ninf", "neg", "tiny")]
        reply = client.post(f"/{kind}", [("action", "delete")] + [("key", k) for k in keys])
        assert reply.status == 303 and "n=4" in reply.header("Location"), kind
        assert {e.jid for e in entries.page(0, 100)} == {"ms", "n"}


# --- item 13: jobs addressed by jid, whatever their size ------------------------------------

def delete_form(page: Reply, jid_or_digest: str) -> list[tuple[str, str]]:
    """The hidden fields of the delete form of one job row, as a browser would send them."""
    forms = re.findall(r'<form method="post"[^>]*>(.*?)</form>', page.text, re.S)
    mine = next(f for f in forms if f'name="job" value="{jid_or_digest}"' in f)
    fields = [(unescape(n), unescape(v)) for n, v in
              re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', mine)]
    return [(n, v) for n, v in fields if n != "csrf"] + [("action", "delete")]


def test_a_2_mib_job_is_deleted_from_the_queue_page(serve, redis, api):
    client = Client(serve())
    big = job("b" * 24, args=["x" * (2 << 20)])
    broken = "{not json " + "y" * (2 << 20)
    for text in [job("first"), big, broken, job("last")]:
        push(redis, api, "default", text)
    page = client.get("/queues/default")
    assert page.status == 200 and len(page.body) < 200_000, "no job text travels in the page"
    for ident in ["b" * 24, Entry(broken).digest]:
        reply = client.post("/queues/default", delete_form(client.get("/queues/default"), ident))
        assert reply.status == 303 and "n=1" in reply.header("Location"), ident
    assert [e.jid for e in api.queue("default").jobs()] == ["last", "first"]


def test_a_job_that_is_gone_is_reported_gone(serve, redis, api):
    client = Client(serve())
    push(redis, api, "default", job("a" * 24))
    form = delete_form(client.get("/queues/default"), "a" * 24)
    redis.delete(api.keys.queue("default"))  # a worker took it meanwhile
    push(redis, api, "default", job("other"))
    reply = client.post("/queues/default", form)
    assert "gone=1" in reply.header("Location")
    assert "no longer there" in client.get(reply.header("Location")).text
    assert api.queue("default").size == 1
    redis.zadd(api.keys.retry, {job("r" * 24): 100.0})
    key = api.retries.page()[0].key
    redis.delete(api.keys.retry)
    reply = client.post(f"/retries/{segment(key)}", {"action": "retry_now"},
                        page="/retries")
    assert "gone=1" in reply.header("Location")
    assert "no longer there" in client.get(reply.header("Location")).text


def test_a_job_found_by_its_jid_after_it_moved(serve, redis, api):
    client = Client(serve())
    for n in range(300):
        push(redis, api, "default", job(f"{n:024}"))
    form = delete_form(client.get("/queues/default?page=12"), f"{20:024}")
    for n in range(300, 500):  # 200 more pushed: the job moved far from its index
        push(redis, api, "default", job(f"{n:024}"))
    assert "n=1" in client.post("/queues/default", form).header("Location")
    assert api.queue("default").find(f"{20:024}") is None and api.queue("default").size == 499


def test_a_2_mib_job_in_a_sorted_set_is_deleted(serve, redis, api):
    client = Client(serve())
    redis.zadd(api.keys.dead, {job("d" * 24, args=["x" * (2 << 20)]): time.time()})
    key = api.dead.page()[0].key
    reply = client.post(f"/morgue/{segment(key)}", {"action": "delete"},
                        page="/morgue")
    assert "n=1" in reply.header("Location") and api.dead.size == 0


def test_a_body_over_1_mib_is_413(serve):
    client = Client(serve())
    # The server answers at once, without reading the body it refuses.
    reply = client.request("POST", "/queues/default",
                           headers={"Content-Length": str((1 << 20) + 1)})
    assert reply.status == 413
    assert_secured(reply)


# --- any queue name Redis holds ---------------------------------------------------------------

NAMES = ["a/b", "a b", "%", "..", ".", "", "ü日本", "<script>alert(1)</script>", "x?y#z",
         "/lead", "trail/", "a%2Fb", "tab\tname", "+plus&amp"]


def test_any_queue_name_is_listed_opened_and_cleared(serve, redis, api, redis_url):
    client = Client(serve())
    base = f"http://127.0.0.1:{client.port}/queues"
    for name in NAMES:
        push(redis, api, name, job(f"j{NAMES.index(name)}", queue=name))
    raw = redis_py.Redis.from_url(redis_url)  # bytes: a name that is not UTF-8
    raw.sadd(api.keys.queues, b"bad\xff")
    raw.lpush(b"queue:bad\xff", job("bytes").encode())
    listing = client.get("/queues")
    assert listing.status == 200
    links = [unescape(link) for link in
             re.findall(r'<a href="([^"]+)"><strong>', listing.text)]
    assert len(links) == len(NAMES) + 1
    for link in links:
        url = urlsplit(urljoin(base, link))  # as a browser resolves it: dot segments go
        path = url.path + ("?" + url.query if url.query else "")
        page = client.get(path)
        assert page.status == 200 and "This queue is empty" not in page.text, link
        action = unescape(re.search(r'<form method="post" action="([^"]+)" class="actions">',
                                    page.text).group(1))
        reply = client.post(action, {"action": "clear"}, page=path)
        assert reply.status == 303, (link, reply.status, reply.text)
    assert redis.smembers(api.keys.queues) == set()
    assert [key for key in raw.keys(b"queue:*")] == []


# --- item 14: read-only mode never writes -------------------------------------------------

@pytest.fixture
def reader(redis, redis_url):
    """A Redis user that may read and nothing else; removed afterwards."""
    redis.execute_command("ACL", "SETUSER", "forkq-reader", "reset", "on", ">pw", "~*", "&*",
                          "+@read", "+@connection", "-@write")
    yield redis_url.replace("unix://", "unix://forkq-reader:pw@", 1)
    redis.execute_command("ACL", "DELUSER", "forkq-reader")


def test_read_only_pages_work_for_a_user_that_may_only_read(serve, redis, api, reader):
    seed_odd_data(redis, api)
    redis.sadd(api.keys.processes, "gone:2:abc")  # its heartbeat hash expired
    with pytest.raises(redis_py.exceptions.NoPermissionError):
        redis_py.Redis.from_url(reader).srem(api.keys.processes, "gone:2:abc")
    client = Client(serve(redis_url=reader, web={"read_only": True}))
    pages = ["/", "/stats", "/busy", "/queues", "/queues/default", "/scheduled", "/retries",
             "/morgue", "/morgue?q=ms", "/static/forkq.css", "/metrics", "/metrics/app.Job"]
    pages += [f"/retries/{segment(e.key)}" for e in api.retries.page()]
    for path in pages:
        reply = client.get(path)
        assert reply.status == 200, (path, reply.text[-300:])
    assert "gone:2:abc" in redis.smembers(api.keys.processes), "nothing pruned"
    assert client.post("/queues/default", {"action": "clear"}).status == 403


# --- item 15: errors, idle connections, password guessing ------------------------------------

@pytest.mark.fault
def test_error_responses_carry_the_security_headers(serve, redis, api, monkeypatch):
    monkeypatch.delenv("FORKQ_WEB_USERNAME", raising=False)
    monkeypatch.delenv("FORKQ_WEB_PASSWORD", raising=False)
    port = serve()
    client = Client(port)
    replies = {400: Client(port, "evil.example").get("/"), 404: client.get("/nowhere"),
               405: client.request("DELETE", "/queues"),
               403: client.request("POST", "/morgue", b"action=delete_all"),
               413: client.request("POST", "/morgue",
                                   headers={"Content-Length": str((1 << 20) + 1)}),
               404.1: client.get("/static/nothing.css")}
    auth_port = serve(web=AUTH)
    replies[401] = Client(auth_port).get("/")
    for code, reply in replies.items():
        assert reply.status == int(code), (code, reply.status)
        assert_secured(reply)
    assert replies[401].header("WWW-Authenticate").startswith("Basic")


@pytest.mark.fault
def test_a_failing_page_is_a_500_with_the_security_headers(redis, make_config):
    web = web_server.make_server(make_config(), "127.0.0.1:0")
    routes = web.get_app().router.routes

    def broken(app, request):
        raise RuntimeError("a bug in a view")

    routes[:] = [(m, p, broken if h.__name__ == "stats" else h) for m, p, h in routes]
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        reply = Client(web.server_address[1]).get("/stats")
        assert reply.status == 500 and "a bug in a view" not in reply.text
        assert_secured(reply)
    finally:
        web.shutdown()
        web.server_close()
        thread.join(5)


@pytest.mark.parametrize("request_text, status", [
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431)])
def test_errors_of_the_http_layer_carry_the_security_headers(serve, request_text, status):
    port = serve()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_text)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n")[0].decode()
    assert head.startswith(f"HTTP/1.0 {status}"), head
    for name, part in SECURITY_HEADERS.items():
        assert re.search(rf"^{name}: .*{re.escape(part)}", head, re.M | re.I), name


def dropped_within(port: int, seconds: float, first_bytes: bytes = b"") -> bool:
    """True when the server closes a connection that sends ``first_bytes`` then nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        sock.sendall(first_bytes)
        try:
            while sock.recv(65536):
                pass
        except TimeoutError:
            return False
        return True


@pytest.mark.slow
def test_an_idle_connection_is_dropped(serve):
    port = serve()
    started = time.monotonic()
    assert dropped_within(port, web_server.IDLE_TIMEOUT + 5)
    assert dropped_within(port, web_server.IDLE_TIMEOUT + 5, b"GET / HTTP/1.1\r\nHost: localh")
    assert time.monotonic() - started < 2 * web_server.IDLE_TIMEOUT + 4
    assert Client(port).get("/").status == 200, "the server still serves"


def test_wrong_passwords_are_slowed_per_address(serve, monkeypatch):
    monkeypatch.delenv("FORKQ_WEB_USERNAME", raising=False)
    monkeypatch.delenv("FORKQ_WEB_PASSWORD", raising=False)
    port = serve(web=AUTH)
    logged_in = Client(port, auth=("admin", "s3cret"))
    assert logged_in.get("/").status == 200
    guesses = [Client(port, auth=("admin", f"guess{n}")).get("/").status for n in range(8)]
    assert guesses[:5] == [401] * 5 and set(guesses[5:]) == {429}
    throttled = Client(port, auth=("admin", "guess9")).get("/")
    assert_secured(throttled)
    assert 1 <= int(throttled.header("Retry-After")) <= 3
    assert Client(port, auth=("admin", "s3cret")).get("/").status == 200, \
        "credentials verified before are not slowed"
    elsewhere = Client(port, source="127.0.0.2", auth=("other", "pw"))
    assert elsewhere.get("/").status == 401, "another address has its own bucket"
    wait_for(lambda: Client(port, auth=("admin", "guess10")).get("/").status == 401, 10,
             message="a token back after the refill time")


# --- item 8: forkq web says where it listens ------------------------------------------------

@pytest.mark.slow
def test_forkq_web_prints_where_it_listens(redis_url, tmp_path):
    config = tmp_path / "forkq.yml"
    config.write_text(f"redis_url: {redis_url}\nloglevel: warn\nweb:\n  read_only: true\n")
    process = subprocess.Popen([sys.executable, "-m", "forkq.cli", "web", "-c", str(config),
                                "--bind", "127.0.0.1:0"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([process.stderr], [], [], 30)
        assert ready, "no line within 30 s"
        line = process.stderr.readline().strip()
        found = re.fullmatch(r"forkq web: listening on http://127\.0\.0\.1:(\d+)/ "
                             r"\(read-only, no authentication\)", line)
        assert found, line
        assert Client(int(found.group(1))).get("/").status == 200
    finally:
        process.terminate()
        process.wait(10)
