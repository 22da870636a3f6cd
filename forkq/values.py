"""The rules for plain values that forkq reads from people: seconds, counts, names, flags.

``positive_seconds`` is the one check of "a positive number of seconds" for every option and
argument given in code (job options, ``result_ttl``, limiter durations, periodic ``every``,
time limits); ``name_problem`` says why a queue name or namespace cannot be used. The other
functions are the parsers of ``config.py``: each takes a raw value (a YAML scalar, or the text
of an environment variable or flag) and returns the parsed value or raises ``ValueError``
saying what was expected. Pure functions, used by every process.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any, Callable

HOUR = 3600.0
DAY = 86400.0
YEAR = 365 * DAY
#: characters of a queue name, namespace or host that could drive a terminal or forge a log line
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: longest queue name or namespace accepted
MAX_NAME = 200


def is_positive_seconds(value: Any, minimum: float = 0.0) -> bool:
    """True for a finite int or float above zero (and at least ``minimum``); a bool is not a
    number of seconds, and other number types would not survive the payload's JSON."""
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and value > 0 and value >= minimum)


def positive_seconds(value: Any, where: str, error: type[Exception] = TypeError,
                     minimum: float = 0.0) -> float:
    """``value`` as float seconds, or ``error`` saying that ``where`` must be a positive number
    of seconds (``where`` names the call and the option: ``"Report.set: option 'result_ttl'"``)."""
    if not is_positive_seconds(value, minimum):
        raise error(f"{where} must be a positive number of seconds, not {value!r}")
    return float(value)


# --- parsers of configuration values: each returns the parsed value or raises ValueError

def number(value: Any, convert: Callable[[str], Any], expected: str) -> Any:
    """``value`` read as a number; YAML's true/false are not numbers."""
    if isinstance(value, bool):
        raise ValueError(expected)
    try:
        return convert(str(value).strip())
    except ValueError:
        raise ValueError(expected) from None


def integer(minimum: int, maximum: int, why: str = "") -> Callable[[Any], int]:
    expected = f"expected an integer from {minimum} to {maximum}{why}"

    def parse(value: Any) -> int:
        parsed = number(value, int, expected)
        if not minimum <= parsed <= maximum:
            raise ValueError(expected)
        return parsed
    return parse


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
            return None
        return parse(value)
    return parse_optional


def seconds(maximum: float, minimum: float = 0.0) -> Callable[[Any], float]:
    """Finite seconds, above zero, within bounds: NaN or a zero poll interval would spin."""
    expected = (f"expected a number of seconds {f'>= {minimum:g}' if minimum else '> 0'} "
                f"and <= {maximum:g}")

    def parse(value: Any) -> float:
        parsed = number(value, float, expected)
        if not (is_positive_seconds(parsed, minimum) and parsed <= maximum):
            raise ValueError(expected)
        return parsed
    return parse


def string(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a string")
    text = str(value)
    if _CONTROL.search(text):
        raise ValueError("control characters are not allowed")
    return text


def path(value: Any) -> str:
    text = string(value)
    if not text.strip():
        raise ValueError("expected a non-empty path")
    return text


def name(value: Any) -> str:
    problem = name_problem(string(value))
    if problem:
        raise ValueError(problem)
    return str(value)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def string_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part for part in value.replace(",", " ").split() if part]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(string(v) for v in value)


def modules(value: Any) -> tuple[str, ...]:
    names = string_list(value)
    for module in names:
        if not all(part.isidentifier() for part in module.split(".")):
            raise ValueError(f"{module!r} is not a module name (write app.jobs, not app/jobs.py)")
    return names


def host(value: Any) -> str:
    """A host name or address; the port has its own key (an IPv6 address is written bare)."""
    text = string(value).strip()
    if not text or any(c.isspace() or c in "/[]" for c in text):
        raise ValueError("expected a host name or IP address")
    if ":" in text:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError("expected a host name or IP address; put the port in 'port'") from None
    return text


def name_problem(text: str) -> str | None:
    """Why a queue name (or namespace) cannot be used, or None.

    Whitespace and control characters could not be listed in ``FORKQ_QUEUES`` or ``-q`` and
    would forge log lines; a comma is read as ``name,weight`` by every queue list; the length
    bound keeps keys and log lines readable."""
    if not text:
        return "expected a non-empty name"
    if len(text) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if _CONTROL.search(text) or any(c.isspace() for c in text):
        return "whitespace and control characters are not allowed"
    if "," in text:
        return "a comma is not allowed (queue lists read name,weight)"
    return None
