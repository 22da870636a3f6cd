"""The web UI's Periodic page: leader, entries, next and last run with its jid, escaped."""

from __future__ import annotations

import json

from forkq.keys import Keys
from forkq.web.app import App
from test_web import XSS, Browser


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
