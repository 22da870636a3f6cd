"""Where a producer's Redis is: settings, key namespace and the connection, resolved lazily.

A ``Source`` answers three questions for the clients (``client.py``, ``aio.py``), the result
readers (``results.py``), the limiters and the API: which settings (``settings``), which keys
(``keys``) and which connection (``redis``, ``url()``). It runs in any process of the
application; ``configure()`` only records settings: the connection opens at first use, so
modules that configure at import are safe to preload before ``fork()``.

Settings come from the same place as the workers': ``configure(...)`` > environment
(``REDIS_URL``, ``FORKQ_*``) > the config file (``FORKQ_CONFIG``, else ``forkq.yml`` in the
working directory) > defaults, read at first use. Without a Redis URL the embedded server under
``data_dir`` is used. In a worker or a command the parsed config wins (``use_config``).

``default_source()`` is the process's own, which ``forkq.configure`` sets.
"""

from __future__ import annotations

from typing import Any

from .. import config
from ..config import Config
from ..keys import Keys, keys_for
from . import LazyClient, resolve_url

#: the source named in messages about values given to ``configure()``
CONFIGURE = "forkq.configure()"


class Source:
    """One Redis and namespace to push to and read from; thread-safe to share."""

    def __init__(self) -> None:
        #: keys given by ``configure()`` (or adopted from a command's config, with its
        #: ``max_retries``)
        self._given: dict[str, Any] = {}
        #: False once a command's parsed config was adopted: its file and environment are read
        self._read_environment = True
        self._settings: tuple[Config, Keys] | None = None
        self._redis = LazyClient()

    def configure(self, redis_url: str | None = None, namespace: str | None = None,
                  data_dir: str | None = None) -> None:
        """Record settings (``None`` keeps the current one); opens no connection."""
        given = {key: value for key, value in (("redis_url", redis_url), ("namespace", namespace),
                                               ("data_dir", data_dir)) if value is not None}
        config.from_mapping(given, CONFIGURE)  # a bad value fails here, at the call
        self._given.update(given)
        self._forget_settings()

    def use_config(self, settings: Config, per_thread: bool = False) -> None:
        """Adopt a worker's or command's parsed config (its ``redis_url`` wins); a worker asks
        for a connection per thread (``LazyClient``). Its ``max_retries`` is kept too, so that
        code running in the worker (server middleware) reads the limit its retries follow."""
        self._given.update(redis_url=settings.redis_url or self._given.get("redis_url"),
                           namespace=settings.namespace or "", data_dir=settings.data_dir,
                           max_retries=settings.max_retries)
        self._read_environment = False
        self._forget_settings()
        self._redis.per_thread = per_thread

    def close(self) -> None:
        """Close the connection, if one was opened; the next use opens a new one."""
        self._redis.reset()

    @property
    def settings(self) -> Config:
        """What is used: ``configure()`` > environment > config file > defaults.

        Read at first use, so a producer uses the same file and environment as the workers;
        ``configure()`` makes the next use read them again."""
        return self._resolved()[0]

    @property
    def keys(self) -> Keys:
        return self._resolved()[1]

    @property
    def redis(self):
        """The redis-py client (per thread in a worker, a shared waiting pool elsewhere)."""
        return self._redis.get(self.url)

    def url(self) -> str:
        """The Redis URL in use (the embedded server's socket when none is set)."""
        settings = self.settings
        return resolve_url(settings.redis_url, settings.data_dir)

    def _resolved(self) -> tuple[Config, Keys]:
        resolved = self._settings
        if resolved is None:
            if self._read_environment:
                settings = config.load(config.default_path(), flags=self._given,
                                       flags_source=CONFIGURE)
            else:
                settings = config.from_mapping(self._given, CONFIGURE)
            resolved = self._settings = (settings, keys_for(settings.layout, settings.namespace))
        return resolved

    def _forget_settings(self) -> None:
        self._settings = None
        self._redis.reset()


_default = Source()


def default_source() -> Source:
    """The process's source: the one ``forkq.configure`` sets and workers configure."""
    return _default
