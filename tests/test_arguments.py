import datetime
import decimal
import uuid

import pytest

from forkq import payload


@pytest.mark.parametrize("args", [
    [], [1, "a", None, True, 1.5], [{"a": [1, {"b": None}]}], [[1, [2, [3]]]], [2 ** 70],
])
def test_json_native_arguments_pass(args):
    payload.check_args(args, "Job.perform_async")


@pytest.mark.parametrize("value, fragment", [
    (datetime.datetime(2026, 1, 1), "args[0] is a datetime.datetime, which is not JSON-native; pass an ISO 8601 string"),
    (datetime.date(2026, 1, 1), "pass an ISO 8601 string"),
    (decimal.Decimal("1.10"), "Decimal, which is not JSON-native; pass a string"),
    ({1, 2}, "builtins.set, which is not JSON-native; pass a list"),
    ((1, 2), "builtins.tuple"),
    (b"x", "pass a string"),
    (uuid.uuid4(), "uuid.UUID"),
    (float("nan"), "nan, which JSON cannot carry"),
    (float("inf"), "inf, which JSON cannot carry"),
    ({1: "a"}, "has the key 1 of type int"),
    (object(), "builtins.object"),
])
def test_non_json_arguments_are_refused_with_advice(value, fragment):
    with pytest.raises(TypeError) as error:
        payload.check_args([value], "HardJob.perform_async")
    assert fragment in str(error.value)
    assert str(error.value).startswith("HardJob.perform_async: args[0]")


def test_nested_path_is_named():
    with pytest.raises(TypeError, match=r"args\[1\]\['when'\]\[0\] is a datetime"):
        payload.check_args([1, {"when": [datetime.datetime.now()]}], "J")
