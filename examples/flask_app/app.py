"""A Flask app that enqueues a forkq job and serves forkq's web UI under ``/forkq/``.

From the repository root, with the workers running (``forkq start -r examples.welcome -P 1``):

    flask --app examples.flask_app.app run
    curl -d email=ann@example.com http://127.0.0.1:5000/signup     # {"jid": "..."}
    curl http://127.0.0.1:5000/welcomed                              # ["ann@example.com"]
    open http://127.0.0.1:5000/forkq/

No ``forkq.configure`` call: the app finds Redis as the workers do (``REDIS_URL``, else
``forkq.yml``, else the embedded server that ``forkq start`` runs under ``./.forkq``).
"""

from flask import Flask, jsonify, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import forkq.web
from examples import welcome

app = Flask(__name__)
# The UI is a WSGI app: mounted here, it gets SCRIPT_NAME=/forkq and writes every link under it.
app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/forkq": forkq.web.app})


@app.post("/signup")
def signup():
    jid = welcome.send_welcome.perform_async(request.form["email"])
    return jsonify(jid=jid), 202


@app.get("/welcomed")
def welcomed():
    return jsonify(welcome.welcomed())
