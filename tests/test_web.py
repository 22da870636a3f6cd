"""The web UI through WSGI: every route, auth, CSRF, escaping, mounting, read-only mode."""

from __future__ import annotations

import base64
import http.cookies
import io
import json
import re
import time
import wsgiref.util
from html import unescape
from urllib.parse import quote, urlencode

import pytest

import forkq
import forkq.web
from forkq.api import Api
from forkq.jobmetrics import JobMetrics
from forkq.keys import Keys
from forkq.errors import ConfigError
from forkq.web import charts, security, server
from forkq.web.app import App
from forkq.web.throttle import LoginThrottle
from helpers import wait_for

XSS = "<script>alert(1)</script>"


class WebJob(forkq.Job):
    options = {"queue": "default"}


class Result:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = int(status.split()[0])
        self.headers = headers
        self.text = body.decode("utf-8")

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def form_token(self) -> str:
        return re.search(r'name="csrf" value="([^"]*)"', self.text).group(1)


class Browser:
    """A tiny WSGI caller that keeps cookies, like a browser on one site."""

    def __init__(self, app, script_name: str = "", auth: tuple[str, str] | None = None) -> None:
        self.app = app
        self.script_name = script_name
        self.auth = auth
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | list | None = None,
                headers: dict[str, str] | None = None) -> Result:
        path, _, query = path.partition("?")
        body = urlencode(form or {}, doseq=True).encode()
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                   "SCRIPT_NAME": self.script_name, "wsgi.input": io.BytesIO(body),
                   "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "localhost:7433",
                   "CONTENT_TYPE": "application/x-www-form-urlencoded"}
        wsgiref.util.setup_testing_defaults(environ)
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.auth:
            token = base64.b64encode(":".join(self.auth).encode()).decode()
            environ["HTTP_AUTHORIZATION"] = f"Basic {token}"
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        captured = {}
        chunks = self.app(environ, lambda status, hdrs: captured.update(status=status, hdrs=hdrs))
        result = Result(captured["status"], captured["hdrs"], b"".join(chunks))
        for name, value in result.headers:
            if name == "Set-Cookie":
                jar = http.cookies.SimpleCookie(value)
                self.cookies.update({k: m.value for k, m in jar.items()})
        return result

    def get(self, path: str, **kwargs) -> Result:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, form: dict | list, page: str | None = None, **kwargs) -> Result:
        """Submits like the page's form: fetches the page for its CSRF token first."""
        token = self.get(page or path.split("?")[0]).form_token()
        pairs = list(form.items()) if isinstance(form, dict) else list(form)
        return self.request("POST", path, form=pairs + [("csrf", token)], **kwargs)


def failed(jid: str, queue: str = "default", **extra) -> str:
    return json.dumps({"class": "app.Failing", "args": [1], "jid": jid, "queue": queue,
                       "error_class": "RuntimeError", "error_message": "boom",
                       "retry_count": 1, "failed_at": time.time(), **extra})


@pytest.fixture
def api(redis):
    return Api(redis)


@pytest.fixture
def app(redis, make_config):
    return App(make_config(), redis, environ={})


@pytest.fixture
def browser(app):
    return Browser(app)


def seed(redis, api) -> None:
    WebJob.perform_async(XSS)
    WebJob.perform_in(600, XSS)
    redis.zadd(api.keys.retry, {failed("r" * 24, error_message=XSS): time.time() + 60})
    redis.zadd(api.keys.dead, {failed("d" * 24): time.time(), "{not json " + XSS: time.time() - 5})
    identity = "host:1:abc"
    redis.sadd(api.keys.processes, identity)
    redis.hset(api.keys.process(identity), mapping={
        "info": json.dumps({"hostname": "host", "pid": 1, "tag": XSS, "concurrency": 5,
                            "queues": ["default"]}),
        "busy": 1, "beat": time.time(), "quiet": "false", "rss": 2048})
    redis.hset(api.keys.work(identity), "t1", json.dumps(
        {"queue": "default", "run_at": int(time.time()),
         "payload": json.dumps({"class": "app.Slow", "args": [XSS], "jid": "w" * 24})}))
    metrics = JobMetrics()
    for name in (XSS, "app.Job"):
        metrics.job_finished("default", name, 0.05, False)
    metrics.flush(redis, api.keys, time.time())


PAGES = ["/", "/?days=7", "/?days=90", "/busy", "/queues", "/queues/default",
         "/queues/default?page=2", "/scheduled", "/retries", "/morgue", "/morgue?q=not+json",
         "/retries?q=r", "/scheduled?page=3&count=5", "/metrics", "/metrics?period=8h&substr=%3C",
         "/metrics/app.Job?period=2h", "/metrics/" + quote(XSS, safe="")]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_escaped_with_security_headers(browser, redis, api, path):
    seed(redis, api)
    result = browser.get(path)
    assert result.status == 200
    assert "<script>alert" not in result.text
    assert "default-src 'self'" in result.header("Content-Security-Policy")
    assert result.header("X-Frame-Options") == "DENY"
    assert result.header("X-Content-Type-Options") == "nosniff"
    assert "<script>" not in result.text.replace('<script src=', '')


def test_escaped_values_are_shown_as_text(browser, redis, api):
    seed(redis, api)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in browser.get("/queues/default").text
    assert "&lt;script&gt;" in browser.get("/busy").text
    assert "&lt;script&gt;" in browser.get("/retries").text
    assert "&lt;script&gt;" in browser.get("/morgue").text, "malformed entry shown as raw text"


def test_detail_pages_and_gone_entries(browser, redis, api):
    seed(redis, api)
    for kind, entries in [("retries", api.retries), ("morgue", api.dead),
                          ("scheduled", api.scheduled)]:
        for entry in entries.page():
            result = browser.get(f"/{kind}/{entry.key}")
            assert result.status == 200, (kind, entry.key)
            assert "<script>alert" not in result.text
    assert browser.get("/retries/123.0-nothere").status == 404
    assert browser.get("/retries/garbage").status == 404


def test_backtrace_on_detail_page(browser, redis, api):
    lines = ["app.py:3 in perform", "lib.py:9 in <lambda>"]
    encoded = base64.b64encode(__import__("zlib").compress(json.dumps(lines).encode())).decode()
    redis.zadd(api.keys.retry, {failed("b" * 24, error_backtrace=encoded): 5})
    text = browser.get(f"/retries/{api.retries.page()[0].key}").text
    assert "lib.py:9 in &lt;lambda&gt;" in text


def test_stats_json(browser, redis, api):
    seed(redis, api)
    stats = json.loads(browser.get("/stats").text)
    assert stats["enqueued"] == 1 and stats["scheduled"] == 1 and stats["retries"] == 1
    assert stats["dead"] == 2 and stats["busy"] == 1 and stats["processes"] == 1
    assert stats["redis"]["version"]


def test_static_files_and_unknown_paths(browser):
    css = browser.get("/static/forkq.css")
    assert css.status == 200 and css.header("Content-Type").startswith("text/css")
    assert browser.get("/static/forkq.js").header("Content-Type").startswith("text/javascript")
    assert browser.get("/static/../app.py").status == 404
    assert browser.get("/static/nothing.css").status == 404
    assert browser.get("/nowhere").status == 404
    assert browser.request("DELETE", "/queues").status == 405


def test_retry_now_from_the_detail_page(browser, redis, api):
    seed(redis, api)
    entry = api.dead.find("d" * 24)
    result = browser.post(f"/morgue/{entry.key}", {"action": "retry_now"})
    assert result.status == 303 and result.header("Location").startswith("/morgue?done=retry_now")
    assert api.dead.find("d" * 24) is None
    assert any(job.jid == "d" * 24 for job in api.queue("default").jobs())
    assert "queued to run now" in browser.get(result.header("Location")).text


def test_bulk_actions_on_selected_and_all(browser, redis, api):
    redis.zadd(api.keys.retry, {failed(f"{n:024}"): n for n in range(5)})
    keys = [entry.key for entry in api.retries.page(0, 2)]
    result = browser.post("/retries", [("action", "kill")] + [("key", k) for k in keys])
    assert result.status == 303 and "n=2" in result.header("Location")
    assert api.retries.size == 3 and api.dead.size == 2
    browser.post("/retries", {"action": "retry_all"})
    assert api.retries.size == 0 and api.queue("default").size == 3
    browser.post("/morgue", {"action": "delete_all"})
    assert api.dead.size == 0


def test_scheduled_add_to_queue_and_delete(browser, redis, api):
    jids = [WebJob.perform_in(600, n) for n in range(3)]
    first, second = api.scheduled.find(jids[0]), api.scheduled.find(jids[1])
    browser.post("/scheduled", {"action": "add_to_queue", "key": first.key})
    browser.post(f"/scheduled/{second.key}", {"action": "delete"})
    assert api.queue("default").jobs()[0].jid == jids[0]
    assert [e.jid for e in api.scheduled.page()] == [jids[2]]
    assert browser.post("/scheduled", {"action": "frobnicate"}).status == 400


def test_queue_delete_job_and_clear(browser, redis, api):
    jids = [WebJob.perform_async(n) for n in range(3)]
    jid = api.queue("default").jobs()[0].jid
    result = browser.post("/queues/default", {"action": "delete", "job": jid, "index": "0",
                                              "page": "1"})
    assert result.header("Location") == "/queues/default?done=delete&n=1&page=1"
    assert [e.jid for e in api.queue("default").jobs()] == jids[1::-1]
    browser.post("/queues/default", {"action": "clear"})
    assert api.queue("default").size == 0 and api.all_queues() == []


def test_queues_page_pauses_and_resumes_and_queue_page_cancels(browser, redis, api):
    jids = [WebJob.perform_async(n) for n in range(2)]
    page = browser.get("/queues")
    assert 'value="pause"' in page.text and "paused</span>" not in page.text
    result = browser.post("/queues/default", {"action": "pause"}, page="/queues")
    assert result.header("Location") == "/queues?done=pause" and api.queue("default").paused
    page = browser.get("/queues?done=pause")
    assert "paused</span>" in page.text and 'value="resume"' in page.text
    assert "Queue paused" in page.text
    browser.post("/queues/default", {"action": "resume"}, page="/queues")
    assert not api.queue("default").paused
    assert 'value="cancel"' in browser.get("/queues/default").text
    result = browser.post("/busy", {"action": "cancel", "jid": jids[0]}, page="/queues/default")
    assert result.header("Location") == "/busy?done=cancel&n=1"
    assert [e.jid for e in api.queue("default").jobs()] == [jids[1]] and api.cancelled == 1
    result = browser.post("/busy", {"action": "cancel", "jid": jids[0]}, page="/queues")
    assert result.header("Location") == "/busy?done=cancel&n=0&gone=1"


def test_busy_quiet_and_stop_signal_processes(browser, redis, api):
    seed(redis, api)
    browser.post("/busy", {"action": "quiet", "identity": "host:1:abc"})
    browser.post("/busy", {"action": "stop", "identity": "*"})
    assert redis.lrange(api.keys.signals("host:1:abc"), 0, -1) == ["TERM", "TSTP"]


def test_post_without_csrf_token_is_refused_and_changes_nothing(browser, redis, api):
    seed(redis, api)
    browser.get("/morgue")
    missing = browser.request("POST", "/morgue", form={"action": "delete_all"})
    wrong = browser.request("POST", "/morgue", form={"action": "delete_all", "csrf": "forged"})
    assert missing.status == 403 and wrong.status == 403
    assert api.dead.size == 2
    stranger = Browser(browser.app)  # no cookie: a cross-site form cannot set ours
    token = browser.get("/morgue").form_token()
    assert stranger.request("POST", "/morgue", form={"action": "delete_all",
                                                     "csrf": token}).status == 403
    assert api.dead.size == 2


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "cross-site"},
                                     {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "https://evil.example"},
                                     {"Origin": "null"}])
def test_cross_site_post_is_refused(browser, redis, api, headers):
    seed(redis, api)
    result = browser.post("/morgue", {"action": "delete_all"}, headers=headers)
    assert result.status == 403 and api.dead.size == 2


def test_same_origin_post_is_accepted(browser, redis, api):
    seed(redis, api)
    result = browser.post("/morgue", {"action": "delete_all"},
                          headers={"Sec-Fetch-Site": "same-origin",
                                   "Origin": "http://localhost:7433"})
    assert result.status == 303 and api.dead.size == 0


def test_csrf_cookie_is_strict_and_http_only(app):
    result = Browser(app, "/admin").get("/")
    cookie = result.header("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie


def test_script_name_prefixes_links_and_redirects(app, redis, api):
    seed(redis, api)
    mounted = Browser(app, "/admin/forkq")
    page = mounted.get("/retries").text
    links = re.findall(r'(?:href|src|action)="([^"]+)"', page)
    assert links and all(link.startswith("/admin/forkq/") for link in links), links
    assert 'data-stats-url="/admin/forkq/stats"' in mounted.get("/").text
    result = mounted.post("/morgue", {"action": "retry_all"})
    assert result.header("Location").startswith("/admin/forkq/morgue?")


def test_read_only_hides_buttons_and_refuses_posts(redis, api, make_config):
    seed(redis, api)
    viewer = Browser(App(make_config(web={"read_only": True}), redis, environ={}))
    for path in ["/busy", "/queues", "/queues/default", "/retries", "/morgue", "/scheduled",
                 f"/retries/{api.retries.page()[0].key}"]:
        text = viewer.get(path).text
        assert 'name="action"' not in text and 'type="checkbox"' not in text, path
        assert 'method="post"' not in text, path
    refused = viewer.request("POST", "/morgue", form={"action": "delete_all"})
    assert refused.status == 403 and api.dead.size == 2
    assert "read-only" in viewer.get("/").text


AUTH = {"username": "admin", "password_hash": security.hash_password("s3cret", 1000)}


def test_basic_auth_from_config(redis, make_config):
    app = App(make_config(web=AUTH), redis, environ={})
    assert Browser(app).get("/").status == 401
    assert Browser(app).get("/").header("WWW-Authenticate").startswith("Basic")
    assert Browser(app, auth=("admin", "wrong")).get("/").status == 401
    assert Browser(app, auth=("other", "s3cret")).get("/").status == 401
    assert Browser(app).get("/static/forkq.css").status == 401
    assert Browser(app, auth=("admin", "s3cret")).get("/").status == 200
    assert Browser(app, auth=("admin", "s3cret")).get("/stats").status == 200


def test_basic_auth_from_environment_wins(redis, make_config):
    environ = {"FORKQ_WEB_USERNAME": "ops", "FORKQ_WEB_PASSWORD": "from-env"}
    app = App(make_config(web=AUTH), redis, environ=environ)
    assert Browser(app, auth=("admin", "s3cret")).get("/").status == 401
    assert Browser(app, auth=("ops", "from-env")).get("/").status == 200


def test_half_configured_auth_is_a_config_error(redis, make_config):
    with pytest.raises(ConfigError, match="username"):
        App(make_config(web={"username": "admin"}), redis, environ={})
    with pytest.raises(ConfigError, match="pbkdf2_sha256"):
        App(make_config(web={"username": "a", "password_hash": "plain"}), redis, environ={})


def test_password_hash_round_trip():
    hashed = security.hash_password("pw", 1000)
    assert hashed.startswith("pbkdf2_sha256$1000$")
    assert security.verify_password("pw", hashed) and not security.verify_password("pW", hashed)
    assert security.hash_password("pw", 1000) != hashed, "salted"


def test_serve_refuses_public_bind_without_auth(make_config, monkeypatch):
    monkeypatch.delenv("FORKQ_WEB_USERNAME", raising=False)
    monkeypatch.delenv("FORKQ_WEB_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="without authentication"):
        server.make_server(make_config(), "0.0.0.0:0")
    with pytest.raises(ConfigError, match="without authentication"):
        forkq.web.serve(make_config(web={"bind": "192.0.2.1"}))
    public = server.make_server(make_config(web=AUTH), "0.0.0.0:0")
    public.server_close()


def test_loopback_detection():
    assert server.is_loopback("127.0.0.1") and server.is_loopback("::1")
    assert server.is_loopback("localhost")
    assert not server.is_loopback("0.0.0.0") and not server.is_loopback("example.com")


def test_redis_down_gives_503(make_config):
    config = make_config(redis_url="redis://127.0.0.1:1/0")
    result = Browser(App(config, None, environ={})).get("/queues")
    assert result.status == 503 and "Redis is unavailable" in unescape(result.text)


def test_lazy_module_app_reads_forkq_config(redis, redis_url, tmp_path, monkeypatch):
    config_file = tmp_path / "forkq.yml"
    config_file.write_text(f"redis_url: {redis_url}\nweb:\n  read_only: true\n")
    monkeypatch.setenv("FORKQ_CONFIG", str(config_file))
    lazy = type(forkq.web.app)()
    assert "read-only" in Browser(lazy).get("/").text


@pytest.mark.parametrize("maximum, step", [(0, 1), (1, 0.5), (7, 2), (100, 50), (4000, 1000),
                                           (12_345, 5000)])
def test_chart_steps_are_round(maximum, step):
    assert charts.nice_step(maximum) == step


def test_history_chart_has_a_point_per_day(api):
    days = api.history(7)
    svg = charts.history_svg(days)
    assert svg.count("<title>") == 7 and svg.startswith("<svg")


@pytest.mark.parametrize("netloc, loopback_only, listed, any_with_auth", [
    ("localhost", True, True, True), ("localhost:7433", True, True, True),
    ("127.0.0.1:1", True, True, True), ("127.9.9.9", True, True, True),
    ("[::1]:7433", True, True, True), ("LocalHost.", True, True, True),
    ("forkq.internal:443", False, True, True), ("evil.example", False, False, True),
    ("127.0.0.1.evil.example", False, False, True), ("0.0.0.0", False, False, True),
    ("localhost:x", False, False, False), ("[::1", False, False, False), ("", False, False, False),
])
def test_hosts_accept_loopback_and_listed_names(netloc, loopback_only, listed, any_with_auth):
    assert security.Hosts([], authenticated=False).allows(netloc) is loopback_only
    assert security.Hosts(["forkq.internal"], authenticated=True).allows(netloc) is listed
    assert security.Hosts([], authenticated=True).allows(netloc) is any_with_auth


def test_origin_is_checked_against_the_accepted_names_not_the_host():
    hosts = security.Hosts(["forkq.internal"], authenticated=False)
    assert hosts.same_origin(None, None, "localhost:1")
    assert hosts.same_origin("same-origin", "http://localhost:1", "localhost:1")
    assert not hosts.same_origin(None, "http://evil.example", "evil.example")
    assert not hosts.same_origin(None, "http://localhost:2", "localhost:1"), "another port"
    assert hosts.same_origin(None, "https://forkq.internal", "127.0.0.1:7433"), "via a proxy"
    assert not hosts.same_origin(None, "null", "localhost:1")
    assert not hosts.same_origin("cross-site", "http://localhost:1", "localhost:1")


def test_login_throttle_is_a_bucket_per_address():
    now = [0.0]
    throttle = LoginThrottle(burst=2, refill=1.0, max_clients=3, clock=lambda: now[0])
    assert throttle.take("a") == 0 and throttle.take("a") == 0
    assert throttle.take("a") == pytest.approx(1.0)
    assert throttle.take("b") == 0, "another address has its own bucket"
    now[0] = 0.5
    assert throttle.take("a") == pytest.approx(0.5)
    now[0] = 1.0
    assert throttle.take("a") == 0
    throttle.give_back("a")
    assert throttle.take("a") == 0, "a correct password costs nothing"
    for address in "cdefg":
        throttle.take(address)
    assert len(throttle._buckets) <= 3, "memory is bounded"


def test_the_periodic_page_lists_leader_and_entries_escaped(redis, make_config):
    keys = Keys()
    browser = Browser(App(make_config(), redis, environ={}))
    empty = browser.get("/periodic")
    assert empty.status == 200 and "Leader:" in empty.text and "none: no master" in empty.text
    redis.set(keys.periodic_leader, "host-a:4242:abcdef")
    redis.hset(keys.periodic_state, mapping={
        "ping:last": json.dumps({"tick": 1767225600, "jid": "j" * 24, "at": 1767225600.2}),
        "ping:next": "1767225601",
        f"{XSS}:next": "not a time", f"{XSS}:last": "not json"})
    page = browser.get("/periodic").text
    assert "host-a:4242:abcdef</strong> (master pid 4242)" in page
    assert "2026-01-01 00:00:00 UTC" in page and "2026-01-01 00:00:01 UTC" in page
    assert "j" * 24 in page
    assert XSS not in page and "&lt;script&gt;" in page
    assert 'href="/periodic" class="active"' in page


def test_the_periodic_page_shows_odd_timestamps_raw(redis, make_config):
    keys = Keys()
    browser = Browser(App(make_config(), redis, environ={}))
    redis.hset(keys.periodic_state, mapping={
        "huge:next": "1e300", "huge:last": json.dumps({"tick": 1e300, "jid": "a"}),
        "nan:next": "nan", "nan:last": json.dumps({"tick": -5, "jid": "b"}),
        "text:last": json.dumps({"tick": "soon", "jid": "c"}),
        "ok:next": "1767225601"})
    response = browser.get("/periodic")
    assert response.status == 200
    assert "1e+300" in response.text and "soon" in response.text
    assert "2026-01-01 00:00:01 UTC" in response.text


def test_the_web_ui_reads_redis_only_through_the_api():
    """Its forkq imports are the api, the config, the errors and the log's escaping, nothing
    that reads Redis."""
    import ast
    import pathlib

    allowed = {"forkq", "forkq.api", "forkq.config", "forkq.errors", "forkq.log"}
    folder = pathlib.Path(forkq.web.__file__).parent
    found = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                found.add(f"forkq.{node.module}")
            elif isinstance(node, ast.ImportFrom) and node.level == 2:  # from .. import name
                found.update("forkq" if alias.name.startswith("__") else f"forkq.{alias.name}"
                             for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("forkq."):
                found.add(node.module)
    assert found <= allowed, found - allowed


def poison(redis, keys: Keys) -> None:
    """One of each bad record a producer with write access can leave for the admin side."""
    from forkq.jobmetrics import minute_bucket, utc

    deep = "[" * 5000 + "]" * 5000
    redis.sadd(keys.processes, "deep:1:abc", "queue:x")
    redis.hset(keys.process("deep:1:abc"), mapping={"info": deep, "busy": 1,
                                                     "beat": time.time()})
    redis.lpush("queue:x", "{}")
    redis.hset(keys.periodic_state, mapping={"deep:last": deep, "deep:next": "1" * 400})
    redis.hset(keys.job_metrics(minute_bucket(utc(time.time()))),
               mapping={"app.Huge|p": "9" * 400, "app.Huge|ms": "9" * 400})
    redis.sadd(keys.queues, "hashed")
    redis.hset(keys.queue("hashed"), "a", "b")
    redis.delete(keys.retry)
    redis.lpush(keys.retry, "x")


@pytest.mark.parametrize("path", PAGES + ["/periodic", "/stats", "/metrics/app.Huge",
                                          "/queues/hashed", "/retries?q=x"])
def test_a_poisoned_record_never_takes_a_page_down(browser, redis, api, path):
    seed(redis, api)
    poison(redis, api.keys)
    response = browser.get(path)
    assert response.status == 200, response.text


def test_bad_records_are_shown_as_bad_with_their_reason(browser, redis, api):
    poison(redis, api.keys)
    busy = unescape(browser.get("/busy").text)
    assert busy.count("bad record") == 2
    assert "info nests JSON deeper than 32 levels" in busy
    assert "its key is not a heartbeat hash (WRONGTYPE" in busy
    periodic = unescape(browser.get("/periodic").text)
    assert "bad record" in periodic and "last nests JSON deeper than 32 levels" in periodic
    metrics = unescape(browser.get("/metrics").text)
    assert "2 bad record(s)" in metrics and "app.Huge|" in metrics
    stats = json.loads(browser.get("/stats").text)
    assert stats["processes"] == 2 and stats["retries"] == 0
    for path in ("/queues", "/queues/hashed"):
        assert "bad record" in browser.get(path).text
        assert "its key is not a list (WRONGTYPE" in unescape(browser.get(path).text)
    assert "its key is not a sorted set (WRONGTYPE" in unescape(browser.get("/retries").text)


#: a name that reads as "default" with its tail reversed, with a zero-width space and a
#: right-to-left mark: what a producer can name a queue, a class or a host
TRICKY = "evil\u202eexe.\u200bdefault\u200f\u2066x"
INVISIBLE = "\u202e\u200b\u200f\u2066"


@pytest.mark.parametrize("path", ["/queues", "/queue?name=" + quote(TRICKY, safe=""), "/busy",
                                  "/retries", "/retries/1767225600.0-" + "r" * 24, "/metrics",
                                  "/periodic"])
def test_names_with_bidi_or_zero_width_characters_are_shown_escaped(browser, redis, api, path):
    redis.sadd(api.keys.queues, TRICKY)
    redis.lpush(api.keys.queue(TRICKY), json.dumps({"class": TRICKY, "args": [TRICKY],
                                                    "jid": "q" * 24, "queue": TRICKY}))
    redis.zadd(api.keys.retry, {failed("r" * 24, queue=TRICKY, error_message=TRICKY,
                                       **{"class": TRICKY}): 1767225600.0})
    redis.sadd(api.keys.processes, "h:1:a")
    redis.hset(api.keys.process("h:1:a"), mapping={"info": json.dumps(
        {"hostname": TRICKY, "tag": TRICKY, "queues": [TRICKY]}), "beat": time.time()})
    redis.hset(api.keys.periodic_state, f"{TRICKY}:next", "1767225601")
    metrics = JobMetrics()
    metrics.job_finished(TRICKY, TRICKY, 0.05, False)
    metrics.flush(redis, api.keys, time.time())

    page = browser.get(path)
    assert page.status == 200
    assert not any(char in page.text for char in INVISIBLE)
    assert r"evil\u202eexe.\u200bdefault\u200f\u2066x" in unescape(page.text)


def test_multi_line_text_keeps_its_lines_and_escapes_the_rest():
    from forkq.web.app import visible
    from markupsafe import Markup

    assert visible("a\u202eb\nc\td\r") == "a\\u202eb\nc\\td\\r"
    assert visible(Markup("<b>\u200b</b>")) == Markup("<b>\u200b</b>")
    assert visible(5) == 5
@pytest.mark.parametrize("path, text", [("/retries", "No jobs waiting to retry."),
                                        ("/morgue", "No dead jobs."),
                                        ("/scheduled", "No scheduled jobs.")])
def test_an_empty_set_says_so_in_plain_words(browser, path, text):
    page = browser.get(path).text
    assert text in page and "No retries jobs" not in page


def test_class_names_wrap_between_their_parts_and_tracebacks_show_in_the_list(browser, redis,
                                                                              api):
    from forkq.worker.retry import encode_backtrace

    lines = [f"  File \"app/billing.py\", line {n}" for n in range(8)] + ["RuntimeError: boom"]
    redis.zadd(api.keys.dead, {failed("d" * 24, **{"class": "app.billing.ChargeCardJob"},
                                      error_backtrace=encode_backtrace(lines)): time.time()})
    page = browser.get("/morgue").text
    assert '<span class="class-name">app.<wbr>billing.<wbr>ChargeCardJob</span>' in page
    shown = re.search(r"<summary>Traceback</summary><pre[^>]*>(.*?)</pre>", page, re.S).group(1)
    assert unescape(shown).splitlines() == lines[-5:]
    css = browser.get("/static/forkq.css").text
    rule = re.search(r"\.class-name \{([^}]*)\}", css).group(1)
    assert "anywhere" not in rule and "word-break: normal" in rule


def test_the_chart_legends_say_utc_apart_from_the_counts(browser, redis, api):
    seed(redis, api)
    page = browser.get("/metrics").text
    assert re.search(r"failed [\d,]+ <span class=\"muted\">· times in UTC</span>", page)


def test_busy_says_how_old_its_jobs_are_and_the_live_chart_is_seeded(browser, redis, api):
    seed(redis, api)
    assert "As of each process's last heartbeat" in browser.get("/busy").text
    live = re.search(r'<section class="panel live"[^>]*>', browser.get("/").text).group(0)
    stats = api.stats()
    assert (f'data-processed="{stats["processed"]}"' in live
            and f'data-failed="{stats["failed"]}"' in live)


def test_queues_a_worker_listens_to_show_before_anything_was_pushed(browser, redis, api):
    from forkq import ctl

    identity = "host:2:def"
    redis.sadd(api.keys.processes, identity)
    redis.hset(api.keys.process(identity), mapping={
        "info": json.dumps({"hostname": "host", "pid": 2, "concurrency": 5,
                            "queues": ["critical", "default"]}),
        "busy": 0, "beat": time.time(), "quiet": "false", "rss": 2048})
    page = browser.get("/queues").text
    assert "critical" in page and "default" in page
    assert [q["name"] for q in ctl.collect(api)["queues"]] == ["critical", "default"]
    assert api.all_queues() == []  # Sidekiq's list: the queues pushed to


def busy_cell(page: str, identity: str) -> str:
    """The Busy column of one process's row on the Busy page, tags and all."""
    at = page.index(identity)
    row = page[page.rindex("<tr>", 0, at):page.index("</tr>", at)]
    return re.search(r'data-label="Busy" class="num">(.*?)</td>', row, re.S).group(1)


def test_the_busy_column_counts_coroutine_jobs_apart_and_reads_old_records_as_before(
        browser, redis, api):
    info = {"hostname": "host", "pid": 1, "concurrency": 10}
    records = {  # identity -> the hash's fields besides info and beat
        "sidekiq:1:a": {"busy": 12},  # Sidekiq's or an older forkq's: no coroutines field
        "split:2:b": {"busy": 103, "coroutines": 100},
        "idle:3:c": {"busy": 2, "coroutines": 0},
        "text:4:d": {"busy": 5, "coroutines": "many"},
        "over:5:e": {"busy": 2, "coroutines": 7},
    }
    for identity, fields in records.items():
        redis.sadd(api.keys.processes, identity)
        redis.hset(api.keys.process(identity), mapping={
            "info": json.dumps({**info, "async_concurrency": 100}), "beat": time.time(),
            **fields})
    page = browser.get("/busy").text
    cells = {identity: busy_cell(page, identity) for identity in records}
    assert cells == {
        "sidekiq:1:a": "12 / 10",
        "split:2:b": '3 / 10<div class="small">100 / 100 coroutines</div>',
        "idle:3:c": "2 / 10",
        "text:4:d": "5 / 10",
        "over:5:e": "2 / 10"}
    assert unescape(page).count("bad record") == 2
    assert "coroutines is not an integer ('many')" in unescape(page)
    assert "coroutines (7) is more than busy (2)" in page
    assert api.stats()["busy"] == 12 + 103 + 2 + 5 + 2, "busy stays Sidekiq's total"


@pytest.mark.slow
def test_a_child_running_coroutine_jobs_shows_them_apart_from_its_threads(
        start_master, redis, browser):
    """Title and Busy page of a real child with blocked coroutine and thread jobs."""
    from async_jobs import Gated, GatedThreaded
    from masters import title

    master = start_master(processes=1, concurrency=3, async_concurrency=10, tag="split",
                          require=["async_jobs"])
    [pid] = master.ready_pids(1)
    jids = [Gated.perform_async() for _ in range(12)]
    prefix = f"forkq {forkq.__version__} split"
    wait_for(lambda: title(pid) == f"{prefix} [0 of 3 busy, 10 of 10 coroutines]", 10,
             message="ten coroutine jobs in the title")
    # Pushed once the coroutine jobs run: no batch holds it together with them.
    jids.append(GatedThreaded.perform_async())
    wait_for(lambda: title(pid) == f"{prefix} [1 of 3 busy, 10 of 10 coroutines]", 10,
             message="the thread job beside them in the title")
    [process] = Api(redis).processes()

    def cell():
        return busy_cell(browser.get("/busy").text, process.identity)

    wait_for(lambda: cell() == '1 / 3<div class="small">10 / 10 coroutines</div>', 10,
             message="the split counts on the Busy page")
    redis.set("async:gate", 1)
    wait_for(lambda: redis.hlen("async:runs") == 13, 10, message="every gated job ended")
    wait_for(lambda: title(pid) == f"{prefix} [0 of 3 busy]", 10, message="an idle title")
    wait_for(lambda: cell() == "0 / 3", 10, message="an idle Busy column")
