"""The checks ``forkq start`` makes in the master before it forks anything.

Runs in the master, before the preload and the first fork. Without them, a master pointed at a
Redis that does not answer forks every child, and each child fails on its own, with its own
lines, while the master restarts them: the one cause is buried under many symptoms.
"""

from __future__ import annotations

import redis

from .. import connection
from ..connection import cluster
from ..connection.urls import redact
from ..errors import ForkqError


def check_redis(config) -> None:
    """Connect, PING and close; one ``ForkqError`` line naming the URL (passwords hidden) when
    Redis does not answer. The connection is closed here: the master must hold no Redis socket
    when it forks (the children would share it). A server of the wrong kind for the
    ``layout`` (a cluster node for the default one, a single server for ``cluster``) is
    refused the same way."""
    url = connection.resolve_url(config.redis_url, config.data_dir)
    shown = redact(url) if config.redis_url else f"the embedded server under {config.data_dir}"
    client = None
    try:
        client = connection.make_client(url)
        client.ping()
        cluster.check_layout(client, config.layout, shown)
    except cluster.LayoutError as exc:
        raise ForkqError(f"{exc}; no worker was started") from None
    except redis.RedisError as exc:
        raise ForkqError(f"Redis at {shown} does not answer: {type(exc).__name__}: {exc} "
                         f"(check redis_url or REDIS_URL, and that the server runs); no worker "
                         f"was started") from None
    finally:
        if client is not None:
            client.close()  # the pool is the client's own: close its sockets
