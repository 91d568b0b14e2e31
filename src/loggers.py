"""Loggers the lab configures: TensorBoard that does not flush after every metrics write."""

from __future__ import annotations

import time
from typing import Any

from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only


class ThrottledTensorBoardLogger(TensorBoardLogger):
    """``TensorBoardLogger`` whose ``save()`` (a flush of the event file) runs at most every
    ``save_interval_s`` seconds, and always at the end of the run.

    Lightning calls ``save()`` after every metrics write; for models this small, flushing that
    often costs more time than Lightning's whole training loop does. TensorBoard still sees
    new points within ``save_interval_s`` seconds.
    """

    def __init__(self, *args: Any, save_interval_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.save_interval_s = save_interval_s
        self._last_save = float("-inf")

    @rank_zero_only
    def save(self) -> None:
        now = time.monotonic()
        if now - self._last_save >= self.save_interval_s:
            self._last_save = now
            super().save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().save()
        super().finalize(status)
