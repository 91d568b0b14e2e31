"""Library messages a user of the lab can do nothing about, silenced by their text, in one place.

Only what is listed here is silenced; every other warning stays visible. Warnings that the lab
itself caused are fixed where they arise, not listed here.
"""

from __future__ import annotations

import logging
import warnings

# (category, message regex, why it is not the user's to act on)
LIBRARY_WARNINGS: list[tuple[type[Warning], str, str]] = [
    (
        FutureWarning,
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        "Lightning 2.6's own pytree helper still uses torch's deprecated LeafSpec",
    ),
    (
        UserWarning,
        r"Found `dataloader_iter` argument in the `training_step`",
        "model.steps_per_execution > 1 relies on it; tests/test_steps_per_execution.py fails if it changes",
    ),
    (
        UserWarning,
        r"You are using the `dataloader_iter` step flavor",
        "model.steps_per_execution > 1 takes several batches per training step on purpose (SeqBatchTask says "
        "what batch hooks then see)",
    ),
]

# (logger name, message prefix, why)
LIBRARY_LOG_LINES: list[tuple[str, str, str]] = [
    ("pytorch_lightning.utilities.rank_zero", "💡 Tip: For seamless cloud logging", "an advertisement, on every run"),
]


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def silence_library_noise() -> None:
    """Install the filters above (idempotent: a filter already installed is not added twice)."""
    for category, message, _ in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, prefix, _ in LIBRARY_LOG_LINES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefix) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropPrefix(prefix))
