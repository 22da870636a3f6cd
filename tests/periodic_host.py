"""A process hosting a PeriodicScheduler the way a master will: for the leader-takeover test.

``python periodic_host.py REDIS_URL`` runs one ``every: 1`` entry, calling ``tick`` every 0.1 s
with a connection opened and closed around each call; each enqueue is recorded in the list
``test:periodic:enqueued`` as JSON {tick, identity}. SIGTERM stops it cleanly (lease released).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import redis as redis_py

from forkq.keys import Keys
from forkq.periodic import Entry
from forkq.periodic.leader import PeriodicScheduler

#: seconds of the test hosts' lease: a takeover within ~1.1 s keeps every tick on time
LEASE_TTL = 1.0
RECORD = "test:periodic:enqueued"


def main(url: str) -> None:
    identity = f"host:{os.getpid()}"
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    def enqueue(entry, tick):
        with redis_py.Redis.from_url(url) as client:
            client.rpush(RECORD, json.dumps({"tick": tick, "identity": identity}))
        return f"jid-{tick}"

    scheduler = PeriodicScheduler([Entry("ping", "app.Ping", every=1)], Keys(), identity,
                                  enqueue, lease_ttl=LEASE_TTL)
    while not stopping:
        with redis_py.Redis.from_url(url, decode_responses=True) as client:
            scheduler.tick(client, time.time())
        time.sleep(0.1)
    with redis_py.Redis.from_url(url, decode_responses=True) as client:
        scheduler.stop(client)


if __name__ == "__main__":
    main(sys.argv[1])
