"""The job API: wire names, option inheritance, the decorator, per-call options."""

import pytest

import forkq
from forkq.job import resolve
from forkq import testing


class Base(forkq.Job):
    options = {"queue": "low", "retry": 3}

    def perform(self):
        pass


class Child(Base):
    options = {"retry": 1}


class Named(forkq.Job):
    name = "Shared::Named"

    def perform(self, x):
        return x * 2


@forkq.job(queue="mailers", retry=5, name="SendWelcome")
def send_welcome(user_id):
    return f"welcome {user_id}"


def test_wire_names():
    assert Base.wire_name() == "test_job.Base"
    assert Named.wire_name() == "Shared::Named"
    assert send_welcome.wire_name() == "SendWelcome"


def test_registry_resolves_wire_and_qualified_names():
    assert resolve("Shared::Named") is Named
    assert resolve("test_job.Named") is Named
    assert resolve("os.system") is None


def test_options_are_inherited_and_merged():
    assert Child.options == {"queue": "low", "retry": 1}
    assert send_welcome.options == {"queue": "mailers", "retry": 5}


def test_decorated_function_is_still_a_function():
    assert send_welcome(3) == "welcome 3"
    assert send_welcome.__name__ == "send_welcome"


def test_bad_options_fail_at_definition():
    with pytest.raises(TypeError, match="unknown job option 'quuee'"):
        @forkq.job(quuee="x")
        def bad():
            pass
    with pytest.raises(TypeError, match="'retry_in' must be callable"):
        class Bad(forkq.Job):
            options = {"retry_in": 5}


def test_set_and_delay_build_the_payload():
    with testing.fake() as queue:
        Child.set(queue="now", retry_queue="slow", backtrace=10).perform_async()
        send_welcome.delay(9)
    first, second = queue.jobs
    assert (first["queue"], first["retry"], first["retry_queue"], first["backtrace"]) == ("now", 1, "slow", 10)
    assert second["class"] == "SendWelcome" and second["args"] == [9] and second["queue"] == "mailers"
