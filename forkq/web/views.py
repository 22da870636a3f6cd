"""The pages, one handler per route, in Sidekiq's URL layout.

GET handlers read through ``forkq.api`` and render a template; POST handlers act and redirect
(303) back to the page with a notice naming what was done, and how many of the jobs named were
no longer there. Forms name a job by its ident (``Entry.ident``) and its score (sorted sets) or
index (queues, a hint), never by its text. ``App`` has already checked the host, auth,
read-only mode and CSRF before any POST handler runs.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from ..api import SortedSet, jobmetrics
from . import charts
from .http import Request, Response, Router, json_response, redirect

#: rows per page unless ``?count=`` says otherwise
PAGE_SIZE = 25
#: matches shown for a filter; a filter scans the set in batches and stops here
FILTER_LIMIT = 500
#: days of history the dashboard offers (``?days=``); 30 unless another of these is asked
HISTORY_DAYS = (7, 30, 90)
#: seconds between the dashboard's live updates
POLL_INTERVAL = 5
#: classes listed on the Metrics page (busiest first); a filter finds the others
METRICS_CLASSES = 50
#: percentiles shown from the execution-time histograms
PERCENTILES = (50, 95, 99)
#: Sidekiq's labels of the execution-time buckets: each one's upper bound, the last "Slow"
BUCKET_LABELS = [f"{ms}ms" if ms < 1000 else f"{ms / 1000:g}s"
                 for ms in jobmetrics.BUCKET_MS[:-1]] + ["Slow"]


@dataclass(frozen=True)
class SetPage:
    """How one sorted set appears: its path, title and the actions its buttons offer."""

    path: str
    title: str
    attribute: str
    actions: tuple[tuple[str, str], ...]
    all_actions: tuple[tuple[str, str], ...]
    score_label: str
    #: what the page says when the set is empty
    nothing: str


SET_PAGES = {page.path: page for page in (
    SetPage("scheduled", "Scheduled", "scheduled", (("add_to_queue", "Add to queue"),
                                                     ("delete", "Delete")),
            (("add_all_to_queue", "Add all to queue"), ("delete_all", "Delete all")), "Run at",
            "No scheduled jobs."),
    SetPage("retries", "Retries", "retries", (("retry_now", "Retry now"), ("delete", "Delete"),
                                              ("kill", "Kill")),
            (("retry_all", "Retry all"), ("delete_all", "Delete all"), ("kill_all", "Kill all")),
            "Next retry", "No jobs waiting to retry."),
    SetPage("morgue", "Dead", "dead", (("retry_now", "Retry now"), ("delete", "Delete")),
            (("retry_all", "Retry all"), ("delete_all", "Delete all")), "Died", "No dead jobs."),
)}

NOTICES = {
    "add_to_queue": "{n} job(s) added to their queues",
    "add_all_to_queue": "{n} job(s) added to their queues",
    "retry_now": "{n} job(s) queued to run now", "retry_all": "{n} job(s) queued to run now",
    "delete": "{n} job(s) deleted", "delete_all": "{n} job(s) deleted",
    "kill": "{n} job(s) moved to the dead set", "kill_all": "{n} job(s) moved to the dead set",
    "clear": "Queue cleared", "quiet": "Asked {n} process(es) to quiet",
    "pause": "Queue paused: workers take none of its jobs within a second",
    "resume": "Queue resumed",
    "cancel": "{n} job(s) cancelled: interrupted within about a second, or removed",
    "stop": "Asked {n} process(es) to stop",
}


#: actions that send a job to its queue: a malformed entry has none and stays
_REQUEUES = ("retry_now", "add_to_queue")

#: tenants of a fair queue its page lists, the largest backlogs first
TOP_TENANTS = 10


def notice(request: Request) -> str | None:
    """What the last action did: ``done`` and ``n``, plus ``gone`` and ``kept`` counts."""
    template = NOTICES.get(request.query.get("done", ""))
    if template is None:
        return None
    n, gone, kept = (request.int_arg(name, 0) for name in ("n", "gone", "kept"))
    parts = [template.format(n=n)] if n or not (gone or kept) else []
    if gone:
        parts.append(f"{gone} job(s) no longer there: run, moved or deleted meanwhile")
    if kept:
        parts.append(f"{kept} job(s) left in place: not JSON, so no queue to send them to")
    return "; ".join(parts)


def dashboard(app, request: Request) -> Response:
    days = request.int_arg("days", 30)
    days = days if days in HISTORY_DAYS else 30
    history = app.api.history(days)
    return app.render(request, "dashboard.html", days=days, history_days=HISTORY_DAYS,
                      history=history, chart=charts.history_svg(history),
                      redis=app.api.redis_info(), poll_interval=POLL_INTERVAL,
                      totals={"processed": sum(d.processed for d in history),
                              "failed": sum(d.failed for d in history)})


def stats(app, request: Request) -> Response:
    return json_response({**app.api.stats(), "redis": app.api.redis_info(),
                          "server_time": time.time()})


def busy(app, request: Request) -> Response:
    return app.render(request, "busy.html", processes=app.api.processes(),
                      works=app.api.workers())


def busy_action(app, request: Request) -> Response:
    action = request.form.get("action")
    if action == "cancel":
        found = app.api.cancel(request.form.get("jid", "")) is not None
        return redirect(request.url("/busy", done="cancel", n=int(found),
                                    gone=int(not found) or None))
    signal = {"quiet": "TSTP", "stop": "TERM"}.get(action or "")
    identity = request.form.get("identity", "")
    if signal is None:
        return app.error(request, 400, "Unknown action")
    identities = ([p.identity for p in app.api.processes()] if identity == "*"
                  else [identity] if identity else [])
    for each in identities:
        app.api.signal(each, signal)
    return redirect(request.url("/busy", done=action, n=len(identities)))


def queues(app, request: Request) -> Response:
    return app.render(request, "queues.html", queues=app.api.queue_summaries(listened=True))


def queue(app, request: Request, name: str) -> Response:
    """A queue's jobs of one priority level (``?level=``, default 0) or of one tenant
    (``?tenant=``), the size of each level, and the tenants with the largest backlogs."""
    q = app.api.queue(name)
    page, count = _paging(request)
    first = (page - 1) * count
    level = _level(request.query.get("level"))
    tenant = request.query.get("tenant") or None
    levels = q.levels
    tenants, largest = q.tenants(TOP_TENANTS)
    shown = dict(largest).get(tenant, 0) if tenant else levels.get(level, 0)
    return app.render(request, "queue.html", queue=q, page=page, count=count, level=level,
                      levels=levels, tenant=tenant, tenants=tenants, largest=largest,
                      size=q.size,
                      level_size=shown, jobs=q.jobs(first, count, level, tenant),
                      first_index=first)


def queue_by_query(app, request: Request) -> Response:
    """``/queue?name=``: a queue whose name cannot be a path segment (``..``)."""
    if "name" not in request.query:
        return app.error(request, 404, "Page not found")
    handler = queue_action if request.method == "POST" else queue
    return handler(app, request, request.query["name"])


def queue_action(app, request: Request, name: str) -> Response:
    q = app.api.queue(name)
    action = request.form.get("action")
    if action == "clear":
        q.clear()
        return redirect(request.url("/queues", done="clear"))
    if action in ("pause", "resume"):
        q.pause() if action == "pause" else q.resume()
        return redirect(request.url("/queues", done=action))
    if action == "delete":
        found = q.find(request.form.get("job", ""), _int(request.form.get("index")),
                       _level(request.form.get("level")), request.form.get("tenant") or None)
        deleted = bool(found and q.delete(found))
        return redirect(request.queue_url(name, done="delete", n=int(deleted),
                                          gone=int(not deleted) or None,
                                          page=request.form.get("page") or None))
    return app.error(request, 400, "Unknown action")


def sorted_set(app, request: Request, kind: str) -> Response:
    page_info, entries_set = _set(app, kind)
    text = request.query.get("q", "").strip()
    page, count = _paging(request)
    if text:
        matches = list(itertools.islice(entries_set.filter(text), FILTER_LIMIT + 1))
        matches.sort(key=lambda e: e.score or 0.0, reverse=entries_set.descending)
        entries, total = matches[:FILTER_LIMIT], len(matches)
    else:
        entries, total = entries_set.page((page - 1) * count, count), entries_set.size
    return app.render(request, "sorted_set.html", set_page=page_info, entries=entries,
                      entries_set=entries_set, total=total, page=page, count=count, filter=text,
                      filter_limit=FILTER_LIMIT)


def sorted_set_action(app, request: Request, kind: str) -> Response:
    page_info, entries_set = _set(app, kind)
    action = request.form.get("action", "")
    back = f"/{kind}"
    if action in dict(page_info.all_actions):
        done = getattr(entries_set, action)()
        return redirect(request.url(back, done=action, n=done))
    if action not in dict(page_info.actions):
        return app.error(request, 400, "Unknown action")
    counts = _act(entries_set, action, request.form_lists().get("key", []))
    return redirect(request.url(back, done=action, **counts))


def _act(entries_set: SortedSet, action: str, keys: list[str]) -> dict[str, int]:
    """Applies ``action`` to the entries ``keys`` name: how many done, gone, kept in place."""
    counts = {"n": 0, "gone": 0, "kept": 0}
    for key in keys:
        entry = entries_set.get(key)
        if entry is not None and getattr(entries_set, action)(entry):
            counts["n"] += 1
        elif entry is not None and entry.malformed and action in _REQUEUES:
            counts["kept"] += 1
        else:
            counts["gone"] += 1
    return {name: count for name, count in counts.items() if count or name == "n"}


def entry(app, request: Request, kind: str, key: str) -> Response:
    page_info, entries_set = _set(app, kind)
    found = entries_set.get(key)
    if found is None:
        return app.error(request, 404, "That job is no longer in this set: it may have run, "
                                       "been retried or been deleted.")
    return app.render(request, "entry.html", set_page=page_info, entry=found)


def entry_action(app, request: Request, kind: str, key: str) -> Response:
    page_info, entries_set = _set(app, kind)
    action = request.form.get("action", "")
    if action not in dict(page_info.actions):
        return app.error(request, 400, "Unknown action")
    return redirect(request.url(f"/{kind}", done=action, **_act(entries_set, action, [key])))


def metrics(app, request: Request) -> Response:
    """Per-class throughput and run times in Sidekiq 8's keys, forkq's and Ruby's alike."""
    period, minutes = _period(request)
    substring = request.query.get("substr", "")[:100]
    now = time.time()
    found = jobmetrics.top_jobs(app.api.redis, app.api.keys, now, minutes, substring)
    shown = found[:METRICS_CLASSES]
    jobmetrics.add_histograms(app.api.redis, app.api.keys, shown)
    starts = jobmetrics.minute_starts(now, minutes)
    processed = [sum(col) for col in zip(*(m.processed for m in found))] or [0] * minutes
    failed = [sum(col) for col in zip(*(m.failed for m in found))] or [0] * minutes
    return app.render(request, "metrics.html", period=period, periods=jobmetrics.PERIODS,
                      substring=substring, classes=shown, hidden=len(found) - len(shown),
                      percentiles=PERCENTILES, chart=charts.minutes_svg(starts, processed, failed),
                      totals={"processed": sum(processed), "failed": sum(failed)})


def metrics_class(app, request: Request, name: str) -> Response:
    period, minutes = _period(request)
    found = jobmetrics.for_job(app.api.redis, app.api.keys, name, time.time(), minutes)
    return app.render(request, "metrics_class.html", period=period, periods=jobmetrics.PERIODS,
                      job=found, percentiles=PERCENTILES,
                      chart=charts.minutes_svg(found.minutes, found.processed, found.failed),
                      histogram=charts.histogram_svg(found.histogram, BUCKET_LABELS))


def periodic(app, request: Request) -> Response:
    """The leader and each entry's next and last run, as the leading master wrote them
    (``Api.periodic``): an entry appears once a leader has scheduled it."""
    return app.render(request, "periodic.html", periodic=app.api.periodic())


def batches(app, request: Request) -> Response:
    """Open batches (created, not yet succeeded), newest first, with their progress."""
    page, count = _paging(request)
    found = app.api.batches
    return app.render(request, "batches.html", batches=found.page((page - 1) * count, count),
                      total=found.size, page=page, count=count)


def batch(app, request: Request, bid: str) -> Response:
    """One batch: counts, events fired, and its failed jobs linked to the dead set."""
    found = app.api.batches.get(bid)
    if found is None:
        return app.error(request, 404, "No such batch: unknown, or its record expired")
    return app.render(request, "batch.html", batch=found)


def _period(request: Request) -> tuple[str, int]:
    """``?period=`` and its minutes; the last hour unless it names one of ``PERIODS``."""
    period = request.query.get("period", "1h")
    if period not in jobmetrics.PERIODS:
        period = "1h"
    return period, jobmetrics.PERIODS[period]


def _set(app, kind: str) -> tuple[SetPage, SortedSet]:
    page_info = SET_PAGES[kind]
    return page_info, getattr(app.api, page_info.attribute)


def _int(text: str | None) -> int:
    """A form's index hint: 0 when absent, negative or not a number."""
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


def _level(text: str | None) -> int:
    """A priority level from a query or form: 0 when absent or not a whole number."""
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _paging(request: Request) -> tuple[int, int]:
    return request.int_arg("page", 1, low=1), request.int_arg("count", PAGE_SIZE, low=1, high=1000)


def routes() -> Router:
    router = Router()
    sets = "(?P<kind>" + "|".join(SET_PAGES) + ")"
    router.add("GET", "/", dashboard)
    router.add("GET", "/stats", stats)
    router.add("GET", "/busy", busy)
    router.add("POST", "/busy", busy_action)
    router.add("GET", "/metrics", metrics)
    router.add("GET", "/metrics/(?P<name>.+)", metrics_class)
    router.add("GET", "/queues", queues)
    # A queue name may hold "/" (decoded from %2F by the server): the rest of the path is it.
    router.add("GET", "/queues/(?P<name>.+)", queue)
    router.add("POST", "/queues/(?P<name>.+)", queue_action)
    router.add("GET", "/queue", queue_by_query)
    router.add("POST", "/queue", queue_by_query)
    router.add("GET", f"/{sets}", sorted_set)
    router.add("POST", f"/{sets}", sorted_set_action)
    router.add("GET", f"/{sets}/(?P<key>.+)", entry)
    router.add("POST", f"/{sets}/(?P<key>.+)", entry_action)
    router.add("GET", "/periodic", periodic)
    router.add("GET", "/batches", batches)
    router.add("GET", "/batches/(?P<bid>[^/]+)", batch)
    return router
