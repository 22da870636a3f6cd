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


def deep(levels):
    value = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("args, message", [
    ([1, 10 ** 5000], "J: args[1] is an int of more than 4300 digits, which JSON readers "
                      "refuse: pass it as a string"),
    ([1, {"n": [-(10 ** 4300)]}], "J: args[1]['n'][0] is an int of more than 4300 digits"),
    ([1, deep(60_000)], "J: args[1]" + "[0]" * 100 + " nests lists and dicts more than 100 "
                        "deep, which JSON readers refuse (Ruby's among them); flatten it"),
    ([1, "ok\ud800"], "J: args[1] is a string holding a lone surrogate ('\\ud800' at index 2), "
                      "which UTF-8 cannot encode"),
    ([{"a": ["é\udcff"]}], "J: args[0]['a'][0] is a string holding a lone surrogate"),
    ([{"\ud800": 1}], "J: args[0] has the key '\\ud800' of type str"),
])
def test_values_json_or_utf8_cannot_carry_are_refused_naming_the_argument(args, message):
    """Each once raised a bare ValueError, RecursionError or UnicodeEncodeError at the push."""
    with pytest.raises(TypeError) as error:
        payload.check_args(args, "J")
    assert str(error.value).startswith(message)


def test_the_limits_themselves_pass():
    payload.check_args([10 ** 4300 - 1, deep(99), "é ok", {"ключ": "значение"}], "J")
    assert payload.dumps([10 ** 4300 - 1, deep(99)])
