"""Type and range checks of config values, so that a wrong value is named with its key before any data is
read (a raw TypeError from deep inside torch names neither)."""
from __future__ import annotations

import math


def number(key: str, value, minimum: float | None = None, maximum: float | None = None,
           exclusive: bool = False) -> float:
    """A real number; numeric strings count, since YAML 1.1 (PyYAML) reads ``1e-3`` as the string '1e-3'."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number{_range(minimum, maximum, exclusive)}, got {value!r}")
    if (minimum is not None and (value <= minimum if exclusive else value < minimum)) or \
            (maximum is not None and (value >= maximum if exclusive else value > maximum)):
        raise ValueError(f"{key} must be a number{_range(minimum, maximum, exclusive)}, got {value!r}")
    return float(value)


def whole(key: str, value, minimum: int = 0) -> int:
    """A whole number >= minimum (not a bool, not 8.5)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be a whole number >= {minimum}, got {value!r}")
    return value


def flag(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def choice(key: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{key} must be one of {sorted(choices)}, got {value!r}")
    return value


def _range(minimum, maximum, exclusive: bool) -> str:
    if minimum is not None and maximum is not None:
        return f" in ({minimum:g}, {maximum:g})" if exclusive else f" in [{minimum:g}, {maximum:g}]"
    if minimum is not None:
        return f" {'>' if exclusive else '>='} {minimum:g}"
    if maximum is not None:
        return f" {'<' if exclusive else '<='} {maximum:g}"
    return ""
