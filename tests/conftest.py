"""Fixtures: a real redis-server started once per test session, emptied before each test."""

from __future__ import annotations

import os
import sys

import pytest
import redis as redis_py

sys.path.insert(0, os.path.dirname(__file__))

from forkq import client as forkq_client  # noqa: E402
from forkq import config as forkq_config  # noqa: E402
from forkq.embedded import EmbeddedRedis  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    return redis_server.url


@pytest.fixture
def redis(redis_url):
    """A client on an empty database; the forkq client is pointed at the same server."""
    client = redis_py.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    forkq_client.configure(redis_url=redis_url)
    yield client
    client.close()


@pytest.fixture
def make_config(redis_url, tmp_path):
    """Build a Config on the test server; keyword arguments are config keys."""
    def make(**values):
        values.setdefault("redis_url", redis_url)
        values.setdefault("data_dir", str(tmp_path / "data"))
        return forkq_config.from_mapping(values, "test")
    return make
