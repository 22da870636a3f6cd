"""The rule for job arguments: only values that survive a JSON round trip unchanged.

Pure functions, used by the client at enqueue. Anything else is refused with a ``TypeError``
naming the argument, its type and what to pass instead, so a mistake shows at the call site and
not as a job that runs with different data than it was given. Nothing is ever pickled.
"""

from __future__ import annotations

import math
from typing import Callable

_SCALARS = (str, int, bool, type(None))

#: what to pass instead, by type name
_ADVICE = {
    "datetime": "pass an ISO 8601 string (value.isoformat()) or an epoch timestamp",
    "date": "pass an ISO 8601 string (value.isoformat())",
    "time": "pass an ISO 8601 string (value.isoformat())",
    "timedelta": "pass a number of seconds (value.total_seconds())",
    "Decimal": "pass a string (str(value)) to keep its precision, or a float",
    "UUID": "pass a string (str(value))",
    "set": "pass a list (sorted(value))",
    "frozenset": "pass a list (sorted(value))",
    "tuple": "pass a list: JSON has no tuples, so it would arrive as a list",
    "bytes": "pass a string (decode it, or base64-encode binary data)",
    "bytearray": "pass a string (decode it, or base64-encode binary data)",
}


def check(args: list, where: str | Callable[[], str]) -> None:
    """Raise ``TypeError`` for the first argument that JSON would change or refuse.

    ``where`` names the call for the message; a callable is only called on an error, so that
    a bulk push does not format a name per job."""
    for index, value in enumerate(args):
        kind = type(value)
        if kind not in _SCALARS and not (kind is float and math.isfinite(value)):
            prefix = where() if callable(where) else where
            check_value(value, f"{prefix}: args[{index}]")


def check_value(value: object, path: str) -> None:
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is float:
        if not math.isfinite(value):
            raise TypeError(f"{path} is {value!r}, which JSON cannot carry; pass None or a string")
        return
    if kind is list:
        for index, item in enumerate(value):
            if type(item) not in _SCALARS:
                check_value(item, f"{path}[{index}]")
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"{path} has the key {key!r} of type {type(key).__name__}; JSON "
                                f"turns dict keys into strings, so pass string keys")
            if type(item) not in _SCALARS:
                check_value(item, f"{path}[{key!r}]")
        return
    name = kind.__name__
    advice = _ADVICE.get(name, "pass JSON-native values (str, int, float, bool, None, list, "
                               "dict with string keys), e.g. an id to load the object by")
    raise TypeError(f"{path} is a {kind.__module__}.{kind.__qualname__}, which is not JSON-native; "
                    f"{advice}")
