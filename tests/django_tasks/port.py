"""Django's own ``tests/tasks``, ported to ``ForkqBackend`` (run by ``run.py``).

Each Django test class is run unchanged as a subclass here whose ``TASKS`` point at forkq
(``port_settings.py``): Django's dummy backend becomes ``HeldBackend`` (tasks pushed to Redis
and left ``READY``), its immediate backend ``RunBackend`` (a real worker runs each task before
``enqueue`` returns). ``test_custom_backend.py`` tests backend classes it defines itself, no
backend under test, so it is not ported. Django tests that assert something only Django's own
backends do are skipped, each with its reason, listed in ``SKIPS`` below and nowhere else;
where such a test also checks the result, those checks are kept in a ``*_in_the_worker`` test.
``RUN`` tasks are not retried (``RETRY: 0``), as Django's immediate backend runs a task once.
"""

import unittest

from django.tasks import TaskResultStatus
from django.test import override_settings
from port_settings import HELD, RUN, REDIS_URL
from tasks import tasks, test_dummy_backend, test_immediate_backend, test_tasks

#: why a Django test is not run against ForkqBackend
BACKEND_CLASS = ("asserts that the backend is Django's own DummyBackend or ImmediateBackend "
                 "class, or that its OPTIONS are empty")
LOGS = ("asserts log records that Django's immediate backend writes in the enqueuing "
        "process; with forkq a worker runs the task and logs in its own process")
OWN_BACKEND_IN_BODY = ("switches TASKS to Django's own backend inside the test, so it tests "
                       "that backend, not the one under test")
SKIPS = {
    "TaskTest": {"test_using_correct_backend": BACKEND_CLASS,
                 "test_get_backend": BACKEND_CLASS,
                 "test_task_error_invalid_exception": LOGS,
                 "test_task_error_unknown_module": LOGS},
    "ImmediateTest": {
        "test_using_correct_backend": BACKEND_CLASS,
        "test_catches_exception": LOGS, "test_complex_exception": LOGS,
        "test_complex_return_value": LOGS, "test_enqueue_logs": LOGS,
        "test_failed_logs": LOGS, "test_successful_task_no_none_in_logs": LOGS,
        "test_throws_keyboard_interrupt": "expects a KeyboardInterrupt raised by the task to "
                                          "reach the caller of enqueue(); a worker runs it",
        "test_cannot_get_result": "asserts that results cannot be read; ForkqBackend reads them",
        "test_cannot_refresh_result": "asserts that results cannot be refreshed; ForkqBackend "
                                      "refreshes them",
        "test_cannot_pass_run_after": "asserts that run_after is refused; ForkqBackend "
                                      "supports it",
        "test_validate_on_enqueue": OWN_BACKEND_IN_BODY,
        "test_validate_on_aenqueue": OWN_BACKEND_IN_BODY},
    "DummyTest": {
        "test_using_correct_backend": BACKEND_CLASS,
        "test_refresh_result": "edits the dummy backend's result in memory to see refresh() "
                               "pick it up; forkq's results change only when a worker runs "
                               "the task (refresh() is tested by TaskTest.test_refresh_result)",
        "test_refresh_result_async": "as test_refresh_result",
        "test_validate_on_enqueue": OWN_BACKEND_IN_BODY,
        "test_validate_on_aenqueue": OWN_BACKEND_IN_BODY},
}


def clear_held() -> None:
    """Empty the namespace of ``HeldBackend`` (what Django's dummy ``clear()`` does)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{HELD['OPTIONS']['NAMESPACE']}:*"):
        client.delete(key)
    client.close()


def ported(test, **settings):
    """A Django test method that overrides settings itself, run with ``settings`` instead."""
    return override_settings(**settings)(test.__wrapped__)


@override_settings(TASKS={"default": {**HELD, "QUEUES": ["default", "queue_1"]},
                          "immediate": {**RUN, "QUEUES": []},
                          "missing": {"BACKEND": "does.not.exist"}})
class TaskTest(test_tasks.TaskTestCase):
    """``test_task_error_*`` without their log assertion (``LOGS``): ``*_in_the_worker``."""

    def failed_in_the_worker(self):
        result = tasks.failing_task_value_error.using(backend="immediate").enqueue()
        self.assertEqual(len(result.errors), 1)
        return result.errors[0]

    def test_task_error_invalid_exception_in_the_worker(self):
        error = self.failed_in_the_worker()
        object.__setattr__(error, "exception_class_path", "subprocess.run")
        with self.assertRaisesMessage(
                ValueError, "'subprocess.run' does not reference a valid exception."):
            error.exception_class

    def test_task_error_unknown_module_in_the_worker(self):
        error = self.failed_in_the_worker()
        object.__setattr__(error, "exception_class_path", "does.not.exist")
        with self.assertRaises(ImportError):
            error.exception_class


@override_settings(TASKS={"default": {**RUN, "QUEUES": []}})
class ImmediateTest(test_immediate_backend.ImmediateBackendTestCase):
    """Django's tests that also assert log records (``LOGS``) are skipped; their assertions on
    the result are kept below, as the ``*_in_the_worker`` tests."""

    def assert_failed_run(self, result, exception, traceback_end):
        self.assertEqual(result.status, TaskResultStatus.FAILED)
        with self.assertRaisesMessage(ValueError, "Task failed"):
            result.return_value
        self.assertIs(result.is_finished, True)
        self.assertGreaterEqual(result.started_at, result.enqueued_at)
        self.assertGreaterEqual(result.last_attempted_at, result.started_at)
        self.assertGreaterEqual(result.finished_at, result.started_at)
        self.assertIsNone(result._return_value)
        self.assertEqual(result.errors[0].exception_class, exception)
        self.assertIs(result.errors[0].traceback.endswith(traceback_end), True,
                      result.errors[0].traceback)
        self.assertEqual((result.args, result.kwargs), ([], {}))

    def test_catches_exception_in_the_worker(self):
        for task, exception, message in [
                (tasks.failing_task_value_error, ValueError,
                 "This Task failed due to ValueError"),
                (tasks.failing_task_system_exit, SystemExit,
                 "This Task failed due to SystemExit")]:
            with self.subTest(task):
                result = task.enqueue()
                self.assert_failed_run(result, exception, f"{exception.__name__}: {message}\n")
                self.assertEqual(result.task, task)

    def test_complex_exception_in_the_worker(self):
        result = tasks.complex_exception.enqueue()
        self.assert_failed_run(result, ValueError, "ValueError: This task failed\n")
        self.assertIn('ValueError(ValueError("This task failed"))', result.errors[0].traceback)

    def test_complex_return_value_in_the_worker(self):
        # Django's message is "Unsupported type"; forkq's names the task and the type.
        result = tasks.complex_return_value.enqueue()
        self.assertEqual(result.status, TaskResultStatus.FAILED)
        self.assertIsNone(result._return_value)
        self.assertEqual(result.errors[0].exception_class, TypeError)
        self.assertIn("returned a builtins.function", result.errors[0].traceback)


class ImmediateTransactionTest(test_immediate_backend.ImmediateBackendTransactionTestCase):
    test_doesnt_wait_until_transaction_commit_by_default = ported(
        test_immediate_backend.ImmediateBackendTransactionTestCase
        .test_doesnt_wait_until_transaction_commit_by_default, TASKS={"default": RUN})


@override_settings(TASKS={"default": {**HELD, "QUEUES": []}})
class DummyTest(test_dummy_backend.DummyBackendTestCase):
    pass


class DummyTransactionTest(test_dummy_backend.DummyBackendTransactionTestCase):
    def setUp(self):
        clear_held()
        super().setUp()

    test_doesnt_wait_until_transaction_commit_by_default = ported(
        test_dummy_backend.DummyBackendTransactionTestCase
        .test_doesnt_wait_until_transaction_commit_by_default, TASKS={"default": HELD})


def _skip_listed() -> None:
    for class_name, tests in SKIPS.items():
        case = globals()[class_name]
        for name, reason in tests.items():
            setattr(case, name, unittest.skip(reason)(getattr(case, name)))


_skip_listed()

