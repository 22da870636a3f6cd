"""The ``OPTIONS`` of a ``ForkqBackend`` in ``TASKS``: parsed once, problems kept for ``check()``.

| key | meaning | default |
| --- | --- | --- |
| ``REDIS_URL`` | Redis to push to and read results from (any URL of forkq's ``redis_url``: Sentinel and Redis Cluster too) | forkq's client (``forkq.configure``, ``REDIS_URL``, ``forkq.yml``) |
| ``NAMESPACE`` | key namespace, as ``namespace`` in ``forkq.yml`` | none |
| ``CONFIG`` | path of a ``forkq.yml`` whose ``redis_url`` and ``namespace`` to use | none |
| ``RESULT_TTL`` | seconds a task's result is kept after each change | 86400 |
| ``RETRY`` | forkq's ``retry`` option for the tasks: true (the worker's ``max_retries``), false, or a count | true |

A task's priority needs no setting: it orders the task within its queue (``PRIORITY_BANDS``,
which sent it to another queue, is refused with that advice). ``REDIS_URL`` and ``NAMESPACE``
win over ``CONFIG``'s values. The worker that runs the tasks must use the same Redis and
namespace (its ``forkq.yml``): results are written where the job was fetched from.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from ... import client as forkq_client
from ... import hooks
from ...connection import urls
from ...connection.source import Source
from ...errors import ForkqError
from ...options import check_ttl

#: the OPTIONS keys a ForkqBackend reads; any other is reported by ``check()``
KNOWN = ("REDIS_URL", "NAMESPACE", "CONFIG", "RESULT_TTL", "RETRY")
#: seconds a result is kept by default
DEFAULT_RESULT_TTL = 86400


@dataclass(frozen=True)
class Options:
    redis_url: str | None = None
    namespace: str | None = None
    result_ttl: float = DEFAULT_RESULT_TTL
    retry: bool | int = True
    #: the queues of the ``CONFIG`` file, when one is given (the worker's, presumably)
    config_queues: tuple[str, ...] | None = None
    #: what is wrong with the OPTIONS, one message each (reported by ``check()``)
    problems: tuple[str, ...] = field(default=())

    def client(self) -> forkq_client.Client:
        """The forkq client to push and read through (shared by the backend's threads)."""
        if self.redis_url is None and self.namespace is None:
            return forkq_client.default()
        return _client(self.redis_url, self.namespace)


def parse(raw: dict[str, Any], alias: str) -> Options:
    problems: list[str] = []
    where = f"TASKS[{alias!r}]['OPTIONS']"
    for key in raw:
        if key == "PRIORITY_BANDS":
            problems.append(f"{where}: 'PRIORITY_BANDS' is gone: a task's priority now orders it "
                            f"within its own queue, with no band queues to list; remove the key")
        elif key not in KNOWN:
            problems.append(f"{where}: unknown key {key!r} (known: {', '.join(KNOWN)})")
    from_file = _from_config(raw.get("CONFIG"), where, problems)
    url = raw.get("REDIS_URL", from_file.get("redis_url"))
    problem = _url_problem(url)
    if problem:
        problems.append(f"{where}['REDIS_URL']: {problem}")
        url = None
    ttl = raw.get("RESULT_TTL", DEFAULT_RESULT_TTL)
    try:
        check_ttl(ttl, where)
    except TypeError as exc:
        problems.append(str(exc).replace("option 'result_ttl'", "'RESULT_TTL'"))
        ttl = DEFAULT_RESULT_TTL
    retry = raw.get("RETRY", True)
    if not (isinstance(retry, bool) or (isinstance(retry, int) and retry >= 0)):
        problems.append(f"{where}['RETRY'] is {retry!r}; give true, false or a count >= 0")
        retry = True
    return Options(redis_url=url, namespace=raw.get("NAMESPACE", from_file.get("namespace")),
                   result_ttl=ttl, retry=retry,
                   config_queues=from_file.get("queues"), problems=tuple(problems))


def _url_problem(url: Any) -> str | None:
    """What is wrong with ``REDIS_URL`` (``urls.parse``'s rule: any URL forkq connects to,
    Sentinel and Redis Cluster included), or None."""
    if url is None:
        return None
    if not isinstance(url, str):
        return f"{url!r} is not a URL; give a redis:// URL (see forkq's redis_url)"
    try:
        urls.parse(url)
    except urls.RedisURLError as exc:
        return str(exc)
    return None


def _from_config(path: Any, where: str, problems: list[str]) -> dict[str, Any]:
    if path is None:
        return {}
    from ... import config

    try:
        parsed = config.load(str(path))
    except (ForkqError, OSError) as exc:
        problems.append(f"{where}['CONFIG']: {exc}")
        return {}
    return {"redis_url": parsed.redis_url, "namespace": parsed.namespace,
            "queues": parsed.queue_names}


@functools.lru_cache(maxsize=None)
def _client(redis_url: str | None, namespace: str | None) -> forkq_client.Client:
    """A client on this Redis and namespace that runs the process's client middleware, as
    forkq's own client does."""
    source = Source()
    source.configure(redis_url=redis_url, namespace=namespace)
    return forkq_client.Client(hooks.registry.middleware, source)
