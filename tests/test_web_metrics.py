"""The Metrics pages: Sidekiq 8's per-class keys, as forkq writes them and as Ruby does.

Served by a real server on a loopback port for forkq's own numbers; Sidekiq 8.1.7's numbers
(``tests/fixtures/sidekiq-8.1.7-metrics.json``) are read at the fixture's time through WSGI.
"""

from __future__ import annotations

import re
import time
import types
from html import unescape

import pytest

import sidekiq_fixtures
from forkq.jobmetrics import JobMetrics
from forkq.keys import Keys
from forkq.web import views
from forkq.web.app import App
from test_web import Browser
from test_web_server import Client, assert_secured, serve  # noqa: F401 (a fixture)

FIXTURE_NOW = 1764331200


def cells(html: str, name: str) -> list[str]:
    """The text of the table row naming class ``name``."""
    row = next(r for r in re.findall(r"<tr>.*?</tr>", html, re.S)
               if f"<code>{name}</code>" in r)
    return [unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def facts(html: str) -> dict[str, str]:
    return {unescape(k): unescape(re.sub(r"<[^>]+>", "", v)).strip()
            for k, v in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", html, re.S)}


def test_forkqs_own_metrics_on_a_real_server(serve, redis):  # noqa: F811
    metrics = JobMetrics()
    for seconds in (0.01, 0.01, 0.04, 0.2, 2.0):
        metrics.job_finished("default", "app.Charge", seconds, False)
    metrics.job_finished("default", "app.Charge", 1.0, True)
    metrics.job_finished("mail", "app.Mail", 0.5, False)
    metrics.flush(redis, Keys(), time.time())
    client = Client(serve())
    page = client.get("/metrics")
    assert page.status == 200
    assert_secured(page)
    assert "<script>" not in page.text.replace("<script src=", "") and 'style="' not in page.text
    assert cells(page.text, "app.Charge") == ["app.Charge", "6", "1", "2.26 s", "452 ms",
                                              "≤ 45 ms", "≤ 2.5 s", "≤ 2.5 s"]
    assert cells(page.text, "app.Mail")[1:3] == ["1", "0"]
    assert page.text.index("app.Charge") < page.text.index("app.Mail"), "busiest first"
    assert page.text.count('<g class="point">') == 60
    assert Client(serve()).get("/metrics?period=4h").text.count('<g class="point">') == 240
    filtered = client.get("/metrics?substr=MAIL&period=2h")
    assert "app.Mail" in filtered.text and "app.Charge" not in filtered.text
    detail = client.get("/metrics/app.Charge?period=8h")
    assert detail.status == 200 and facts(detail.text)["Processed"] == "6"
    assert facts(detail.text)["p50"] == "≤ 45 ms"
    assert "under 20ms: 2 job(s)" in detail.text and "under 2.5s: 1 job(s)" in detail.text
    assert client.get("/metrics?period=1y").status == 200  # unknown periods show 1h


def test_sidekiq_8_metrics_on_the_pages(redis, make_config, monkeypatch):
    sidekiq_fixtures.load(redis, "sidekiq-8.1.7-metrics")
    monkeypatch.setattr(views, "time", types.SimpleNamespace(time=lambda: FIXTURE_NOW))
    browser = Browser(App(make_config(), redis, environ={}))
    page = browser.get("/metrics")
    # 16 finished, 2 failed, 9.5 s over 14 successes; buckets 500 ms ×4, 750 ms ×9, 3.8 s ×1
    assert cells(page.text, "ChargeJob") == ["ChargeJob", "16", "2", "9.5 s", "679 ms",
                                             "≤ 750 ms", "≤ 3.8 s", "≤ 3.8 s"]
    assert cells(page.text, "MailerJob")[1:] == ["3", "0", "90 ms", "30 ms", "≤ 45 ms",
                                                 "≤ 45 ms", "≤ 45 ms"]
    assert "2025-11-28 11:59 UTC: 13 processed, 2 failed" in page.text
    detail = facts(browser.get("/metrics/ChargeJob").text)
    assert detail["Processed"] == "16" and detail["p95"] == "≤ 3.8 s"


@pytest.mark.parametrize("name", ["Billing::Charge", "odd/name", "<b>x</b>", "ünïcode"])
def test_class_names_of_any_shape_have_a_page(serve, redis, name):  # noqa: F811
    metrics = JobMetrics()
    metrics.job_finished("default", name, 0.1, False)
    metrics.flush(redis, Keys(), time.time())
    client = Client(serve())
    page = client.get("/metrics")
    link = unescape(re.search(r'href="(/metrics/[^"?]+)\?period=1h"', page.text).group(1))
    detail = client.get(link)
    assert detail.status == 200 and facts(detail.text)["Processed"] == "1"
    assert "<b>x</b>" not in detail.text


def test_a_class_name_that_is_not_utf8_has_pages(serve, redis):  # noqa: F811
    from forkq.jobmetrics import minute_bucket, utc

    now = time.time()
    key = Keys().job_metrics(minute_bucket(utc(now)))
    redis.hset(key, mapping={b"Bad\xff|p": 2, b"Bad\xff|f": 1, b"Bad\xff|ms": 300})
    client = Client(serve())
    page = client.get("/metrics")
    assert page.status == 200
    link = unescape(re.search(r'href="(/metrics/Bad[^"?]+)\?period=1h"', page.text).group(1))
    detail = client.get(link)
    assert detail.status == 200 and facts(detail.text)["Processed"] == "2"
