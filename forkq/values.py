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
#: longest duration, in seconds, that forkq accepts for a TTL, delay or limit (100 years).
#: Redis refuses an EX/PX whose milliseconds, added to now, pass 2**63, and refuses the
#: command only when it runs, after the job was pushed: a bound far inside that range,
#: checked where the value is given, keeps every TTL storable.
MAX_SECONDS = 100 * YEAR


def is_positive_seconds(value: Any, minimum: float = 0.0, maximum: float = MAX_SECONDS) -> bool:
    """True for a finite int or float above zero, at least ``minimum`` and at most ``maximum``;
    a bool is not a number of seconds, and other number types would not survive the JSON."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    # an int is compared as it is: math.isfinite(10**400) would raise OverflowError
    return (isinstance(value, int) or math.isfinite(value)) and 0 < value and \
        minimum <= value <= maximum


def positive_seconds(value: Any, where: str, error: type[Exception] = TypeError,
                     minimum: float = 0.0, maximum: float = MAX_SECONDS) -> float:
    """``value`` as float seconds, or ``error`` saying that ``where`` must be a positive number
    of seconds (``where`` names the call and the option: ``"Report.set: option 'result_ttl'"``)
    no greater than ``maximum`` (default ``MAX_SECONDS``, 100 years)."""
    if not is_positive_seconds(value, minimum, maximum):
        raise error(f"{where} must be a positive number of seconds{too_long(value, maximum)}, "
                    f"not {value!r}")
    return float(value)


def too_long(value: Any, maximum: float = MAX_SECONDS) -> str:
    """`` up to 3153600000 (100 years)`` for a number beyond ``maximum``, else nothing: the
    bound is named only to whoever passed it."""
    if not is_positive_seconds(value, maximum=math.inf) or value <= maximum:
        return ""
    return f" up to {maximum:.0f}{' (100 years)' if maximum == MAX_SECONDS else ''}"

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
    if any("\ud800" <= c <= "\udfff" for c in text):
        return "a lone surrogate cannot be written as UTF-8"
    return None
