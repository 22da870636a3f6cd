import os

import pytest

from forkq import config, configfile
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
    ("log_format: xml\n", "key 'log_format' has invalid value 'xml': expected 'text' or 'json'"),
    ("log_root: app\n", "key 'log_root' has invalid value 'app': expected 'forkq' or "
                        "'application'"),
    ("cpu_affinity: sometimes\n", "key 'cpu_affinity' has invalid value 'sometimes': expected "
                                   "true, false or auto"),
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


@pytest.mark.parametrize("value, parsed", [(None, "auto"), ("auto", "auto"), ("AUTO", "auto"),
                                           (True, True), ("false", False), ("off", False)])
def test_cpu_affinity_is_true_false_or_auto(value, parsed):
    given = {} if value is None else {"cpu_affinity": value}
    assert config.from_mapping(given).cpu_affinity == parsed


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


@pytest.mark.parametrize("text, key, reason", [
    ("poll_interval: .nan\n", "poll_interval", "seconds >= 0.05 and <= 3600"),
    ("heartbeat_ttl: .nan\n", "heartbeat_ttl", "seconds > 0 and <= 86400"),
    ("timeout: .inf\n", "timeout", "seconds > 0 and <= 86400"),
    ("timeout: 0\n", "timeout", "seconds > 0"),
    ("poll_interval: 0\n", "poll_interval", "seconds >= 0.05"),
    ("heartbeat_interval: -1\n", "heartbeat_interval", "seconds >= 0.05"),
    ("dead_timeout: 1e300\n", "dead_timeout", "<= 3.1536e+08"),
    ("liveness_timeout: -.inf\n", "liveness_timeout", "seconds > 0"),
    ("concurrency: 100000\n", "concurrency", "from 1 to 1000: each thread holds a Redis connection"),
    ("concurrency: 0\n", "concurrency", "from 1 to 1000"),
    ("async_concurrency: 0\n", "async_concurrency", "from 1 to 10000: coroutine jobs share"),
    ("processes: 1000\n", "processes", "from 1 to 256: each is a forked copy"),
    ("max_retries: 1000\n", "max_retries", "from 0 to 100"),
    ("dead_max_jobs: -1\n", "dead_max_jobs", "from 0 to 10000000"),
    ("max_jobs: 0\n", "max_jobs", "from 1 to"),
    ("redis_url: ftp://example.com/\n", "redis_url", "starting with redis://, rediss://, unix://"),
    ("redis_url: 'redis://localhost:abc/0'\n", "redis_url", "port is not a number"),
    ("web: {port: 99999}\n", "web", "port: expected an integer from 0 to 65535"),
    ("metrics: {port: -1}\n", "metrics", "port: expected an integer from 0 to 65535"),
    ("web: {bind: '0.0.0.0:80'}\n", "web", "put the port in 'port'"),
    ("queues: ['a b']\n", "queues", "whitespace and control characters are not allowed"),
    ("queues: [\"a\\x1b[31m\"]\n", "queues", "control characters"),
    ("queues: [[high, 0]]\n", "queues", "from 1 to 1000 (weights are ratios"),
    ("queues: [" + "q" * 201 + "]\n", "queues", "longer than 200 characters"),
    ("namespace: 'my app'\n", "namespace", "whitespace"),
    ("tag: \"x\\ny\"\n", "tag", "control characters are not allowed"),
    ("require: [app/jobs.py]\n", "require", "write app.jobs, not app/jobs.py"),
    ("data_dir: ''\n", "data_dir", "non-empty path"),
])
def test_values_that_are_not_finite_or_not_sane_are_refused(tmp_path, text, key, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        config.load(path, environ={})
    message = str(error.value)
    assert message.startswith(f"{path}: key '{key}' has invalid value ") and reason in message
    assert "\n" not in message


@pytest.mark.parametrize("values", [{"heartbeat_ttl": 15}, {"heartbeat_interval": 40},
                                    {"heartbeat_interval": 5, "heartbeat_ttl": 9.9}])
def test_heartbeat_ttl_must_be_twice_the_interval(tmp_path, values):
    path = write(tmp_path, "".join(f"{k}: {v}\n" for k, v in values.items()))
    with pytest.raises(ConfigError, match=r"heartbeat_ttl .* must be at least twice "
                                          r"heartbeat_interval") as error:
        config.load(path, environ={})
    assert str(error.value).startswith(path)


def test_a_bad_environment_value_names_the_variable_and_value():
    with pytest.raises(ConfigError, match="environment variable FORKQ_POLL_INTERVAL: key "
                                          "'poll_interval' has invalid value 'nan'"):
        config.load(None, environ={"FORKQ_POLL_INTERVAL": "nan"})


@pytest.mark.parametrize("content, fragment", [
    (b"1: x\n", "key 1 is not a string"),
    (b"web: {1: x}\n", "key 'web' has invalid value {1: 'x'}: key 1 is not a string"),
    (b"web: {[a]: x}\n", "not valid YAML"),
    (b"concurrency: 2\ntag: a\nconcurrency: 3\n", "not valid YAML: key 'concurrency' appears "
                                                   "twice at line 3, column 1"),
    (b"web: {port: 1, port: 2}\n", "key 'port' appears twice"),
    (b"[a, b]\n", "expected a mapping of keys at the top level, not a list"),
    (b"concurrency: 2\ntag: caf\xe9\n", "not UTF-8 text"),
    (b"a: [\n  b: c\n", "not valid YAML"),
    (b"tag: !!python/object:os.system x\n", "not valid YAML"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path, content, fragment):
    path = tmp_path / "forkq.yml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        config.load(str(path), environ={})
    message = str(error.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message


def test_a_directory_or_unreadable_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="is a directory, not a config file"):
        config.load(str(tmp_path), environ={})
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot read the config file: Not a directory"):
        config.load(str(tmp_path / "file" / "forkq.yml"), environ={})
    # Root reads a file of mode 0, so as root the unreadable file is one the kernel refuses to
    # read for everyone: /proc/self/mem at offset 0 fails with EIO.
    if os.geteuid() == 0:
        path, reason = "/proc/self/mem", "Input/output error"
    else:
        path, reason = tmp_path / "forkq.yml", "Permission denied"
        path.write_text("concurrency: 2\n")
        path.chmod(0)
    with pytest.raises(ConfigError, match=f"cannot read the config file: {reason}"):
        config.load(str(path), environ={})


@pytest.mark.parametrize("bind, expected", [
    ("127.0.0.1:8000", ("127.0.0.1", 8000)), ("[::1]:8000", ("::1", 8000)),
    ("::1", ("::1", 7433)), (":9000", ("0.0.0.0", 9000)), ("localhost", ("localhost", 7433)),
    ("7613", ("127.0.0.1", 7613)),
])
def test_bind_forms(bind, expected):
    assert config.parse_bind(bind, 7433) == expected


def test_a_bare_port_number_keeps_the_configured_host():
    assert config.parse_bind("7613", 7433, default_host="0.0.0.0") == ("0.0.0.0", 7613)


@pytest.mark.parametrize("bind", ["0.0.0.0:abc", "0.0.0.0:99999", "host:-1", "[::1]:x",
                                  "a b:80", "1.2.3.4:5:6"])
def test_a_bad_bind_is_refused_naming_it(bind):
    with pytest.raises(ConfigError) as error:
        config.parse_bind(bind, 7433)
    assert str(error.value).startswith(f"command line: --bind {bind!r}: ")


def test_config_file_comes_from_forkq_config_then_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.default_path({}) is None
    write(tmp_path, "tag: here\n")
    assert config.default_path({}) == "forkq.yml"
    assert config.default_path({"FORKQ_CONFIG": "/etc/forkq.yml"}) == "/etc/forkq.yml"


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    path = write(tmp_path, "web: &web {bind: 127.0.0.1, port: 8000}\n"
                           "metrics:\n  <<: *web\n  port: 8001\n")
    loaded = config.load(path, environ={})
    assert (loaded.metrics.bind, loaded.metrics.port, loaded.web.port) == ("127.0.0.1", 8001, 8000)


PERIODIC = """
periodic:
  - name: nightly
    class: app.Report
    cron: "30 2 * * *"
    tz: Europe/Berlin
  - name: ping
    class: app.Ping
    every: 30
    args: [1]
    queue: low
    missed: skip
periodic_lease: 2
"""


def test_periodic_entries_are_read_from_the_file(tmp_path):
    loaded = config.load(write(tmp_path, PERIODIC), environ={})
    nightly, ping = loaded.periodic
    assert (nightly.name, nightly.class_name, nightly.cron, nightly.tz, nightly.queue) == (
        "nightly", "app.Report", "30 2 * * *", "Europe/Berlin", None)
    assert (ping.every, ping.args, ping.queue, ping.missed) == (30, (1,), "low", "skip")
    assert loaded.periodic_lease == 2.0
    assert config.load(None, environ={}).periodic == ()


@pytest.mark.parametrize("entry, fragment", [
    ('{name: n, class: app.A, cron: "61 * * * *"}', "periodic entry 'n': bad cron expression "
                                                    "'61 * * * *'"),
    ('{name: n, class: app.A, cron: "* * *"}', "periodic entry 'n': cron '* * *' must have 5 "
                                               "fields, or 6 with seconds first"),
    ('{name: n, class: app.A, cron: "0 2 * * *", tz: Mars/Olympus}',
     "periodic entry 'n': unknown time zone 'Mars/Olympus'"),
    ("{name: n, class: app.A, every: -1}", "periodic entry 'n': 'every' is -1; give a positive "
                                           "number of seconds"),
    ("{name: n, class: app.A, every: 0.01}", "periodic entry 'n': 'every' is 0.01: expected a "
                                             "number of seconds >= 0.1"),
    ("{name: n, class: app.A, every: 5, queue: 'a b'}", "periodic entry 'n': 'queue' is 'a b': "
                                                        "whitespace and control characters"),
    ("{name: n, class: app.A}", "periodic entry 'n': give exactly one of 'cron' and 'every'"),
    ("{name: n, class: app.A, every: 5, when: 3}", "periodic entry 'n': unknown key 'when'"),
    ("{class: app.A, every: 5}", "'name' is required"),
])
def test_a_bad_periodic_entry_is_one_line_naming_file_entry_and_value(tmp_path, entry,
                                                                       fragment):
    path = write(tmp_path, f"periodic:\n  - {entry}\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message


def test_periodic_lease_is_bounded_and_periodic_is_not_read_from_the_environment(tmp_path):
    with pytest.raises(ConfigError, match="key 'periodic_lease' has invalid value 0.1"):
        config.load(write(tmp_path, "periodic_lease: 0.1\n"), environ={})
    with pytest.raises(ConfigError, match="FORKQ_PERIODIC: not a forkq setting .a structure"):
        config.load(None, environ={"FORKQ_PERIODIC": "x"})


def alias_bomb(levels: int = 9) -> str:
    """A few hundred bytes whose aliases of aliases name 9**levels strings."""
    parts, previous = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'], "a0"
    for level in range(1, levels):
        parts.append(f"&a{level} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = f"a{level}"
    return "tag: [" + ", ".join(parts) + "]\n"


@pytest.mark.parametrize("content, fragment", [
    (alias_bomb(), "not valid YAML: its aliases expand to more than 100,000 values"),
    ("tag: &a [1, *a]\n", "not valid YAML: an alias names a node that holds it"),
    ("tag: &a {b: *a}\n", "not valid YAML: an alias names a node that holds it"),
    ("tag: " + "[" * 100_000 + "]" * 100_000 + "\n", "nest"),
    ("tag: [" + "1," * 100_001 + "1]\n", "more than 100,000 values"),
])
def test_yaml_that_expands_beyond_reason_is_refused_naming_the_file(tmp_path, content,
                                                                     fragment):
    path = write(tmp_path, content)
    assert len(content) < 1024 * 1024  # well under the size bound: the expansion is refused
    with pytest.raises(ConfigError) as error:
        config.load(path, environ={})
    assert str(error.value).startswith(f"{path}: ") and fragment in str(error.value)


def test_a_file_over_the_size_bound_is_refused_naming_file_and_size(tmp_path):
    path = tmp_path / "forkq.yml"
    with open(path, "wb") as handle:
        handle.write(b"concurrency: 2\n")
        handle.truncate(24 * 1024 * 1024)  # sparse: 24 MB to refuse, nothing to read
    with pytest.raises(ConfigError, match=rf"^{path}: 25,165,824 bytes; a config file may "
                                          r"hold at most 1,048,576 bytes$"):
        config.load(str(path), environ={})
    path.write_bytes(b"concurrency: 3\n" + b"#" * (configfile.MAX_FILE_BYTES - 16) + b"\n")
    assert os.path.getsize(path) == configfile.MAX_FILE_BYTES
    assert config.load(str(path), environ={}).concurrency == 3


def test_aliases_within_reason_still_work(tmp_path):
    path = write(tmp_path, "web: &w {allowed_hosts: &h [a.example, b.example]}\n"
                           "metrics: {bind: 127.0.0.1}\nqueues: [x, y]\n"
                           "labels: *h\n")
    assert config.load(path, environ={}).labels == ("a.example", "b.example")


def test_section_keys_come_from_double_underscore_variables(tmp_path):
    path = write(tmp_path, "metrics:\n  bind: 0.0.0.0\nweb:\n  read_only: true\n")
    environ = {"FORKQ_METRICS__PORT": "9300", "FORKQ_WEB__PORT": "7000",
               "FORKQ_WEB__ALLOWED_HOSTS": "a.example, b.example"}
    loaded = config.load(path, environ=environ)
    assert (loaded.metrics.bind, loaded.metrics.port) == ("0.0.0.0", 9300)
    assert (loaded.web.port, loaded.web.read_only) == (7000, True)
    assert loaded.web.allowed_hosts == ("a.example", "b.example")
    with pytest.raises(ConfigError, match="environment variable FORKQ_METRICS__PORT: "
                                          "metrics.port has invalid value 'x'"):
        config.load(None, environ={"FORKQ_METRICS__PORT": "x"})


@pytest.mark.parametrize("variable, suggestion", [
    ("FORKQ_METRICS_PORT", "FORKQ_METRICS__PORT"), ("FORKQ_CONCURENCY", "FORKQ_CONCURRENCY"),
    ("FORKQ_WEB_BIND", "FORKQ_WEB__BIND")])
def test_an_unknown_forkq_variable_is_an_error_with_a_suggestion(variable, suggestion):
    with pytest.raises(ConfigError) as caught:
        config.load(None, environ={variable: "1"})
    assert str(caught.value) == (f"environment variable {variable}: not a forkq setting "
                                 f"(did you mean {suggestion!r}?)")


def test_variables_read_elsewhere_are_not_unknown():
    environ = {"FORKQ_CONFIG": "x.yml", "FORKQ_WEB_USERNAME": "ops", "FORKQ_WEB_PASSWORD": "pw"}
    assert config.load(None, environ=environ).web.port == 7433
