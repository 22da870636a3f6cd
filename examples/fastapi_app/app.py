"""A FastAPI app that enqueues a forkq job without blocking its event loop, and serves forkq's
web UI (a WSGI app, through ``a2wsgi``) under ``/forkq/``.

From the repository root, with the workers running (``forkq start -r examples.welcome -P 1``):

    uvicorn examples.fastapi_app.app:app
    curl -H 'Content-Type: application/json' -d '{"email": "ann@example.com"}' \\
        http://127.0.0.1:8000/signup                                 # {"jid": "..."}
    curl http://127.0.0.1:8000/welcomed                              # ["ann@example.com"]
    open http://127.0.0.1:8000/forkq/

No ``forkq.configure`` call: the app finds Redis as the workers do (``REDIS_URL``, else
``forkq.yml``, else the embedded server that ``forkq start`` runs under ``./.forkq``).
"""

import contextlib

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from pydantic import BaseModel

import forkq.web
from examples import welcome
from forkq import aio


@contextlib.asynccontextmanager
async def lifespan(app):
    yield
    await aio.aclose()  # the event loop's Redis connection


app = FastAPI(lifespan=lifespan)
# Starlette passes the mount path as root_path; a2wsgi turns it into SCRIPT_NAME, under which
# the UI writes every link.
app.mount("/forkq", WSGIMiddleware(forkq.web.app))


class Signup(BaseModel):
    email: str


@app.post("/signup", status_code=202)
async def signup(signup: Signup):
    jid = await aio.perform_async(welcome.send_welcome, signup.email)
    return {"jid": jid}


@app.get("/welcomed")
def welcomed():
    return welcome.welcomed()
