"""forkq's web UI, a WSGI app, served by a Django view.

The view passes the request on with ``SCRIPT_NAME`` set to the mount prefix, so every link the
UI writes stays under it, and turns the answer into an ``HttpResponse``. Being a view, it sits
behind Django's URL routing and middleware: wrap it in ``staff_member_required`` (with
``django.contrib.admin``) or ``login_required`` to reuse the site's logins.
"""

import io

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt


def mount(wsgi_app, prefix):
    """A view serving ``wsgi_app`` at ``prefix`` (e.g. ``/forkq``); route ``prefix`` and
    everything under it to the view."""

    # The UI's forms carry its own CSRF token (checked against its cookie), not Django's.
    @csrf_exempt
    def view(request):
        environ = dict(request.META)
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "").rstrip("/") + prefix
        environ["PATH_INFO"] = environ["PATH_INFO"][len(prefix):] or "/"
        body = request.body
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        started = []
        chunks = wsgi_app(environ, lambda status, headers, exc_info=None:
                          started.append((status, headers)))
        try:
            content = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        status, headers = started[-1]
        response = HttpResponse(content, status=int(status.split()[0]))
        for name, value in headers:
            if name.lower() == "set-cookie":
                response.cookies.load(value)
            else:
                response[name] = value
        return response

    return view
