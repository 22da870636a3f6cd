"""The web UI in headless Chromium: a real server, real clicks, screenshots of every page.

Screenshots land in ``screenshots/`` at the repository root (1280 and 390 pixels wide) for a
person to look at; the assertions here only check that the pages work.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import zlib

import pytest

import forkq
from forkq.api import Api
from forkq.jobmetrics import JobMetrics
from forkq.web import make_server
from helpers import wait_for

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "screenshots")
WIDTHS = {"wide": (1280, 860), "phone": (390, 844)}


class BrowserJob(forkq.Job):
    options = {"queue": "default"}


class MailerJob(forkq.Job):
    options = {"queue": "mailers"}


def _skip(reason: str) -> None:
    print(f"test_browser skipped: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip("the 'playwright' Python package is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        _skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server(redis, make_config):
    web = make_server(make_config(), "127.0.0.1:0")
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{web.server_address[1]}"
    web.shutdown()
    web.server_close()
    thread.join(5)


BACKTRACE = base64.b64encode(zlib.compress(json.dumps([
    "billing/cards.py:88 in charge", "billing/jobs.py:21 in perform",
    "forkq/processor.py:140 in run"]).encode())).decode()


def failed(jid: str, queue: str, error: str, retry_count: int) -> str:
    return json.dumps({"class": "billing.ChargeCard", "args": [4211, {"amount": 1999}],
                       "error_backtrace": BACKTRACE, "jid": jid, "queue": queue, "retry": True,
                       "created_at": time.time() - 900,
                       "enqueued_at": time.time() - 800, "error_class": "billing.CardDeclined",
                       "error_message": error, "retry_count": retry_count,
                       "failed_at": time.time() - 700})


def seed(redis, api: Api) -> None:
    for n in range(12):
        BrowserJob.perform_async(n, "<script>alert('x')</script>")
    MailerJob.perform_async("welcome", {"user": 7})
    for n in range(3):
        MailerJob.perform_in(3600 * (n + 1), "digest", n)
    redis.zadd(api.keys.retry, {failed(f"{n:024x}", "default", "card declined by issuer", n):
                                time.time() + 60 * (n + 1) for n in range(4)})
    redis.zadd(api.keys.dead, {failed("d" * 24, "mailers", "retries exhausted", 25): time.time()})
    identity = "web-1.example.com:4242:0a1b2c"
    redis.sadd(api.keys.processes, identity)
    redis.hset(api.keys.process(identity), mapping={
        "info": json.dumps({"hostname": "web-1.example.com", "pid": 4242, "tag": "shop",
                            "concurrency": 10, "queues": ["default", "mailers"],
                            "started_at": time.time() - 5400, "identity": identity,
                            "labels": ["canary"], "version": "0.1.0"}),
        "busy": 1, "beat": time.time(), "quiet": "false", "rss": 81234, "rtt_us": 120})
    redis.hset(api.keys.work(identity), "tid-7", json.dumps({
        "queue": "default", "run_at": int(time.time()) - 3,
        "payload": json.dumps({"class": "reports.Build", "args": [2024], "jid": "e" * 24})}))
    seed_metrics(redis, api)
    for days_ago in range(30):
        day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - days_ago * 86400))
        redis.set(api.keys.daily_stat("processed", day), 4000 + (days_ago * 733) % 2500)
        redis.set(api.keys.daily_stat("failed", day), (days_ago * 37) % 180)


def seed_metrics(redis, api: Api) -> None:
    """Per-class job metrics over the last hour, one flush a minute, as workers write them."""
    now = time.time()
    for minutes_ago in range(60):
        metrics = JobMetrics()
        for n in range(20 + minutes_ago % 7):
            metrics.job_finished("default", "billing.ChargeCard", 0.05 * (1 + n % 9), n % 11 == 0)
            metrics.job_finished("mailers", "MailerJob", 0.01 * (1 + n % 3), False)
        metrics.flush(redis, api.keys, now - 60 * minutes_ago)


def shoot(page, base: str, path: str, name: str) -> None:
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.goto(base + path)
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}-{label}.png"), full_page=True)


def test_retry_a_dead_job_and_screenshot_every_page(browser, server, redis):
    api = Api(redis)
    seed(redis, api)
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())
    for path, name in [("/", "dashboard"), ("/busy", "busy"), ("/queues", "queues"),
                       ("/queues/default", "queue"), ("/scheduled", "scheduled"),
                       ("/retries", "retries"), ("/morgue", "dead"), ("/metrics", "metrics"),
                       ("/metrics/billing.ChargeCard", "metrics-class")]:
        shoot(page, server, path, name)
    shoot(page, server, "/retries/" + api.retries.page()[0].key, "retry-entry")
    assert not errors, f"console errors: {errors}"

    page.set_viewport_size({"width": 1280, "height": 860})
    page.goto(server + "/")
    wait_for(lambda: page.locator("#live-chart polyline").count() > 0 or
             page.locator("#live").is_visible(), 10, message="live chart shown")
    assert page.get_by_text("<script>alert('x')</script>").count() == 0

    page.goto(server + "/metrics")
    page.get_by_role("link", name="4h").first.click()
    page.wait_for_url("**/metrics?period=4h*")
    page.locator("#metrics-table a", has_text="billing.ChargeCard").click()
    page.wait_for_url("**/metrics/billing.ChargeCard?period=4h")
    assert page.locator("#class-totals").inner_text().count("p9") == 2

    mailers_before = api.queue("mailers").size
    page.goto(server + "/morgue")
    page.locator("table a").first.click()
    page.get_by_role("button", name="Retry now").click()
    page.wait_for_url("**/morgue?*")
    assert "queued to run now" in page.locator(".notice").inner_text()
    wait_for(lambda: api.queue("mailers").size == mailers_before + 1, 5,
             message="dead job moved to its queue")
    assert api.dead.size == 0
    assert api.queue("mailers").jobs(0, 1)[0].jid == "d" * 24
    page.close()


def test_odd_queue_names_and_a_2_mib_job_in_a_browser(browser, server, redis):
    api = Api(redis)
    names = ["a/b", "..", "ü 日本 %"]
    for name in names:
        redis.sadd(api.keys.queues, name)
        redis.lpush(api.keys.queue(name), json.dumps({"class": "X", "args": [], "jid": name}))
    BrowserJob.perform_async("small")
    big = BrowserJob.perform_async("x" * (2 << 20))
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    for name in names:
        page.goto(server + "/queues")
        page.get_by_role("link", name=name, exact=True).click()
        assert page.locator("h1").inner_text().startswith(f"Queues / {name}"), name
        page.get_by_role("button", name="Clear queue").click()
        page.wait_for_url("**/queues?done=clear")
        assert api.queue(name).size == 0, name
    page.goto(server + "/queues/default")
    page.locator("tr", has_text=big).get_by_role("button", name="Delete").click()
    page.wait_for_url("**/queues/default?*")
    assert "1 job(s) deleted" in page.locator(".notice").inner_text()
    assert [job.args for job in api.queue("default").jobs()] == [["small"]]
    page.close()
