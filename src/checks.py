"""One-line errors for bad config values, raised where the value enters."""
from __future__ import annotations


def check_range(key: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """``low <= value <= high`` (either bound may be None), else ``ValueError: <key>=<value> must ...``."""
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"lie in [{low}, {high}]" if low is not None and high is not None else (
            f"be >= {low}" if low is not None else f"be <= {high}"
        )
        raise ValueError(f"{key}={value} must {bounds}")
