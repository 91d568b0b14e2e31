"""The lab's shared input checks: each failure is one line that names the config key (or file and
column) and the bad value, raised where the value enters."""
from __future__ import annotations

from collections.abc import Collection
from typing import Any


class ConfigError(ValueError):
    """A config value the lab refuses; the message names the key and the value."""


class InputFileError(ValueError):
    """A data file the lab refuses; the message names the file and, where it helps, the column or row."""


def check_choice(key: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ConfigError naming ``key``."""
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {tuple(choices)}")
    return value


def check_number(
    key: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """``value`` as an int or float inside [low, high] (open ends where asked), else a ConfigError."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        raise ConfigError(f"{key}={value!r} must be {kind}")
    value = int(value) if integer else float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above or value != value:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ConfigError(f"{key}={value!r} must lie in {interval}")
    return value
