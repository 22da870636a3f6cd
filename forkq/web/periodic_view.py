"""The web UI's Periodic page: the leader and each entry's next and last run (read-only).

Runs in the web server's request threads. Reads ``forkq:periodic:leader`` and
``forkq:periodic:state`` through ``periodic_leader.report``, which the leading master writes:
an entry appears once a leader has scheduled it.
"""

from __future__ import annotations

from ..periodic_leader import report
from .http import Request, Response


def page(app, request: Request) -> Response:
    return app.render(request, "periodic.html", periodic=report(app.api.redis, app.api.keys))
