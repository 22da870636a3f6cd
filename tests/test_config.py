import pytest

from forkq import config
from forkq.config import Queue
from forkq.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "forkq.yml"
    path.write_text(text)
    return str(path)


def test_defaults_without_file():
    loaded = config.load(None, environ={})
    assert loaded.concurrency == 10
    assert loaded.timeout == 25.0
    assert loaded.queues == (Queue("default"),) and loaded.strict
    assert loaded.fetch == "reliable"
    assert loaded.max_retries == 25
    assert loaded.dead_max_jobs == 10_000
    assert loaded.dead_timeout == 180 * 86400
    assert loaded.heartbeat_interval == 10.0


@pytest.mark.parametrize("queues, expected, strict", [
    (["critical", "default"], (Queue("critical"), Queue("default")), True),
    ([["critical", 3], ["default", 1]], (Queue("critical", 3), Queue("default", 1)), False),
    (["critical,3", "low,1"], (Queue("critical", 3), Queue("low", 1)), False),
    ("a b", (Queue("a"), Queue("b")), True),
])
def test_queue_forms(queues, expected, strict):
    assert config.parse_queues(queues) == (expected, strict)


@pytest.mark.parametrize("text, fragment", [
    ("concurency: 5\n", "unknown key 'concurency' (did you mean 'concurrency'?)"),
    ("concurrency: ten\n", "key 'concurrency' has invalid value 'ten'"),
    ("fetch: fast\n", "key 'fetch' has invalid value 'fast'"),
    ("timeout: -1\n", "key 'timeout' has invalid value -1"),
    ("queues: []\n", "key 'queues'"),
    ("queues: [a, a]\n", "listed twice"),
    ("loglevel: loud\n", "key 'loglevel'"),
    ("metrics: {prot: 1}\n", "unknown key 'prot'"),
    ("- a\n- b\n", "expected a mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_values_name_file_key_and_value(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        config.load(path, environ={})
    assert fragment in str(error.value)
    assert path in str(error.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(str(tmp_path / "nope.yml"), environ={})


@pytest.mark.parametrize("name, level", [("warn", "WARNING"), ("warning", "WARNING"),
                                         ("INFO", "INFO"), ("fatal", "CRITICAL")])
def test_loglevel_accepts_sidekiq_and_python_names(name, level):
    assert config.from_mapping({"loglevel": name}).loglevel == level


def test_precedence_defaults_file_environment_flags(tmp_path):
    path = write(tmp_path, "concurrency: 4\ntimeout: 8\ntag: file\nredis_url: redis://file\n")
    environ = {"FORKQ_TIMEOUT": "9", "FORKQ_TAG": "env", "REDIS_URL": "redis://env"}
    loaded = config.load(path, flags={"tag": "flag", "concurrency": None}, environ=environ)
    assert loaded.concurrency == 4
    assert loaded.timeout == 9.0
    assert loaded.tag == "flag"
    assert loaded.redis_url == "redis://env"


def test_environment_errors_name_the_variable():
    with pytest.raises(ConfigError, match="environment variable FORKQ_CONCURRENCY"):
        config.load(None, environ={"FORKQ_CONCURRENCY": "many"})


def test_keys_of_other_commands_are_accepted(tmp_path):
    path = write(tmp_path, "processes: 2\nmax_memory_mb: 300\npidfile: /tmp/x.pid\n"
                           "metrics: {port: null}\nweb: {bind: 0.0.0.0, read_only: true}\n")
    loaded = config.load(path, environ={})
    assert loaded.processes == 2 and loaded.metrics.port is None and loaded.web.read_only


def test_config_is_frozen():
    with pytest.raises(Exception):
        config.Config().concurrency = 3


def test_example_config_at_repository_root_is_valid():
    import os
    root = os.path.dirname(os.path.dirname(__file__))
    loaded = config.load(os.path.join(root, "forkq.yml"), environ={})
    assert loaded.require
