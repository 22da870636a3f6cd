"""The job API: wire names, option inheritance, the decorator, per-call options."""

import inspect
import re

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


def test_coroutine_functions_become_coroutine_jobs_and_async_generators_are_refused():
    @forkq.job(queue="low")
    async def fetch_page(url):
        return url

    class AsyncJob(forkq.Job):
        async def perform(self, x):
            return x

    assert fetch_page.coroutine and AsyncJob.coroutine and not forkq.Job.coroutine
    assert inspect.iscoroutinefunction(fetch_page.job_class.perform)
    with pytest.raises(TypeError, match=r"test_job\.(.*)stream is an async generator function"):
        @forkq.job
        async def stream(url):
            yield url
    with pytest.raises(TypeError, match=r"test_job\..*Streaming\.perform is an async generator"):
        class Streaming(forkq.Job):
            async def perform(self, x):
                yield x
    assert resolve("test_job.test_coroutine_functions_become_coroutine_jobs_and_async_"
                   "generators_are_refused.<locals>.Streaming") is None


def test_result_ttl_is_a_checked_data_option():
    class Kept(forkq.Job):
        options = {"result_ttl": 60}

        def perform(self):
            pass

    assert Kept.options["result_ttl"] == 60
    for bad in (0, -1, True, "60", float("inf")):
        with pytest.raises(TypeError, match=r"option 'result_ttl' must be a positive number of "
                                            r"seconds"):
            Kept.set(result_ttl=bad)


@pytest.mark.parametrize("options, fragment", [
    ({"retry_queue": 5}, "option 'retry_queue' must be a queue name (a string), not 5"),
    ({"dead": "no"}, "option 'dead' must be true or false, not 'no'"),
    ({"retry": "yes"}, "option 'retry' must be true, false or a count from 0 to 100"),
    ({"retry": 10**6}, "option 'retry' must be true, false or a count from 0 to 100"),
    ({"retry": -1}, "option 'retry' must be"),
    ({"queue": ""}, "option 'queue' must be a usable queue name (expected a non-empty name)"),
    ({"queue": "a b"}, "whitespace and control characters are not allowed"),
    ({"queue": "x\n"}, "whitespace and control characters are not allowed"),
    ({"queue": "a,b"}, "a comma is not allowed"),
    ({"queue": "q" * 201}, "longer than 200 characters"),
    ({"backtrace": "lots"}, "option 'backtrace' must be true, false or a line count >= 0, "
                            "not 'lots'"),
    ({"backtrace": -3}, "option 'backtrace' must be"),
    ({"tags": "urgent"}, "option 'tags' must be a list of strings, not 'urgent'"),
    ({"retry_on": "ValueError"}, "option 'retry_on' must be an exception class"),
    ({"colour": "red"}, "unknown job option 'colour'"),
])
def test_bad_options_are_refused_naming_option_and_value(options, fragment):
    with pytest.raises(TypeError, match=re.escape(fragment)):
        type("Bad", (forkq.Job,), {"options": options, "perform": lambda self: None})
    if "retry_on" not in options:
        with pytest.raises(TypeError, match=re.escape(fragment)):
            Base.set(**options)
    with pytest.raises(TypeError, match=re.escape(fragment)):
        forkq.job(**options)(lambda: None)


def test_hooks_are_per_job_only():
    with pytest.raises(TypeError, match="option 'retry_in' is code and cannot travel in a "
                                        "payload; set it in the job's own options"):
        Base.set(retry_in=lambda count, exc: 5)


def test_any_queue_name_redis_holds_that_lists_can_name_is_accepted():
    with testing.fake() as queue:
        Base.set(queue="emails/high").perform_async()
        Base.set(queue="ünïcode:q", retry_queue="q" * 200).perform_async()
    assert [job["queue"] for job in queue.jobs] == ["emails/high", "ünïcode:q"]


@pytest.mark.parametrize("options, fragment", [
    ({"unique_for": 0}, "option 'unique_for' must be a positive number of seconds"),
    ({"unique_for": float("inf")}, "option 'unique_for' must be a positive number of seconds"),
    ({"unique_for": True}, "option 'unique_for' must be a positive number of seconds"),
    ({"unique_for": 5, "unique_until": "end"}, "option 'unique_until' must be 'start' or "
                                               "'success', not 'end'"),
    ({"unique_until": "start"}, "option 'unique_until' needs 'unique_for' (seconds)"),
])
def test_unique_options_are_checked_where_they_are_written(options, fragment):
    with pytest.raises(TypeError) as at_definition:
        type("Unique", (forkq.Job,), {"options": options, "perform": lambda self: None})
    assert fragment in str(at_definition.value)
    with pytest.raises(TypeError) as per_call:
        Child.set(**options)
    assert fragment in str(per_call.value)


def test_a_unique_job_payload_names_its_lock_and_release_point():
    with testing.fake() as queue:
        Child.set(unique_for=30, unique_until="start").perform_async()
    (payload,) = queue.jobs
    assert payload["unique_until"] == "start" and len(payload["unique_digest"]) == 64
    assert "unique_for" not in payload
