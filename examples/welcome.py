"""The job of the web-app examples (``flask_app``, ``fastapi_app``, ``django_app``).

A signup view enqueues ``send_welcome``; a worker runs it. Run the workers from the repository
root, where the apps run too, so that both find forkq's embedded Redis under ``./.forkq``:

    forkq start -r examples.welcome -P 1
"""

import logging

import forkq

#: list of the addresses welcomed, newest last; the apps show it at ``/welcomed``
WELCOMED = "examples:welcomed"

log = logging.getLogger(__name__)


@forkq.job(queue="default", retry=3)
def send_welcome(email):
    """Pretend to mail ``email``; record it so that the app can show the job ran."""
    log.info("welcome mail to %s", email)
    forkq.redis().rpush(WELCOMED, email)


def welcomed():
    """The addresses welcomed so far (read by the apps' ``/welcomed`` views)."""
    return forkq.redis().lrange(WELCOMED, 0, -1)
