"""Checks of the options that ``Executor`` and ``Pool`` take, with errors that name them.

A wrong type would otherwise surface later as a message about the
comparison or arithmetic that failed on it (``'<' not supported between
instances of 'str' and 'int'``), or not at all (``retries=1.5``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["check_args", "check_bytes", "check_count", "check_flag", "check_kwargs",
           "check_seconds"]

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*")


def _kind(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_count(name: str, value: object, minimum: int) -> int:
    """*value* as a whole number of at least *minimum*; TypeError/ValueError naming *name*."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number, got {_kind(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_seconds(name: str, value: object) -> float | None:
    """*value*: None, or a positive number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {_kind(value)}")
    if not value > 0:  # also NaN
        raise ValueError(f"{name} must be positive (seconds), got {value}")
    return float(value)


def check_bytes(name: str, value: object) -> int | None:
    """*value*: None, a positive number of bytes, or a size such as ``"2GB"`` or
    ``"512 MiB"`` (kB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB of 1024)."""
    if value is None:
        return None
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        unit = _UNITS.get(match.group(2).lower()) if match else None
        if match is None or unit is None:
            raise ValueError(f"{name} must be a number of bytes or a size such as '2GB' or "
                             f"'512MiB', got {value!r}")
        size = float(match.group(1)) * unit
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of bytes, a size such as '2GB', or None, "
                        f"got {_kind(value)}")
    else:
        size = value
    if not size >= 1:  # also NaN
        raise ValueError(f"{name} must be a positive number of bytes, got {value!r}")
    return int(size)


def check_flag(name: str, value: object) -> bool:
    """*value* as True or False; TypeError for anything else (``"yes"``, ``1.0``)."""
    if not isinstance(value, (bool, int)) or value not in (0, 1):
        raise TypeError(f"{name} must be True or False, got {_kind(value)}")
    return bool(value)


def check_args(name: str, value: object) -> tuple[Any, ...]:
    """*value*, an iterable of positional arguments, as a tuple (a string too, one
    argument per character, as the standard library takes it)."""
    if not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a tuple of arguments, got {_kind(value)}")
    return tuple(value)


def check_kwargs(name: str, value: object) -> dict[str, Any]:
    """*value*, None or what ``dict()`` takes (a mapping, pairs), as a dict."""
    if value is None:
        return {}
    try:
        kwargs: dict[str, Any] = dict(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a dict of keyword arguments, got {_kind(value)}") from None
    return kwargs
