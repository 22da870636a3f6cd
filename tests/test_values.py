"""The shared value rules: one positive-seconds check, the config parsers, queue names."""

import math
from fractions import Fraction

import pytest

from forkq import values


@pytest.mark.parametrize("value", [1, 0.001, 2.5, 10 ** 9])
def test_positive_seconds_takes_finite_numbers_above_zero(value):
    assert values.positive_seconds(value, "here") == float(value)
    assert values.is_positive_seconds(value)


@pytest.mark.parametrize("value", [0, -1, 0.0, math.nan, math.inf, -math.inf, True, False,
                                   "5", None, [1], Fraction(1, 2)])
def test_positive_seconds_refuses_the_rest_naming_the_place(value):
    assert not values.is_positive_seconds(value)
    with pytest.raises(TypeError, match=r"^Report.set: option 'x' must be a positive number of "
                                        r"seconds, not "):
        values.positive_seconds(value, "Report.set: option 'x'")


def test_positive_seconds_raises_the_error_given_and_keeps_a_minimum():
    assert values.positive_seconds(0.001, "limiter 'x': period", ValueError, minimum=0.001)
    with pytest.raises(ValueError, match="limiter 'x': period must be a positive number"):
        values.positive_seconds(0.0005, "limiter 'x': period", ValueError, minimum=0.001)


@pytest.mark.parametrize("raw, parsed", [("5", 5.0), (" 0.05 ", 0.05), (3600, 3600.0)])
def test_seconds_parser_reads_text_within_bounds(raw, parsed):
    assert values.seconds(values.HOUR, 0.05)(raw) == parsed


@pytest.mark.parametrize("raw", ["0.01", "3601", "nan", "inf", True, "soon"])
def test_seconds_parser_says_what_it_expected(raw):
    with pytest.raises(ValueError, match=r"^expected a number of seconds >= 0.05 and <= 3600$"):
        values.seconds(values.HOUR, 0.05)(raw)


@pytest.mark.parametrize("name, problem", [
    ("default", None), ("", "expected a non-empty name"), ("a b", "whitespace"),
    ("a\x85b", "control characters"), ("a,b", "a comma is not allowed"),
    ("x" * 201, "longer than 200 characters"), ("a\udc80", "a lone surrogate"),
])
def test_name_problem(name, problem):
    found = values.name_problem(name)
    assert found is None if problem is None else problem in found


@pytest.mark.parametrize("raw, parsed", [("yes", True), ("Off", False), (True, True), ("0", False)])
def test_boolean(raw, parsed):
    assert values.boolean(raw) is parsed


@pytest.mark.parametrize("value", [1e300, values.MAX_SECONDS + 1, 10 ** 400])
def test_positive_seconds_refuses_what_redis_could_not_store_naming_the_bound(value):
    assert values.positive_seconds(values.MAX_SECONDS, "here") == values.MAX_SECONDS
    with pytest.raises(TypeError, match=r"^Report.set: option 'result_ttl' must be a positive "
                                        r"number of seconds up to 3153600000 \(100 years\), not "):
        values.positive_seconds(value, "Report.set: option 'result_ttl'")
