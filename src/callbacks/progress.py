"""A TQDM progress bar that draws no separate bar for validation inside fit."""

from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar
from typing_extensions import override

from src.lightning_internals import Tqdm


class TrainingProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` whose validation during fit shows only as metrics on the epoch's bar.

    Validation here is a batch or two per epoch: its own bar would print four lines per epoch to
    a log file and cost about a millisecond per epoch to draw, a few tenths of a per cent of an
    epoch of these models. The sanity check, ``trainer.validate`` and test keep their bars.
    """

    @override
    def init_validation_tqdm(self) -> Tqdm:
        if self.trainer.state.fn == "fit":
            return Tqdm(disable=True)
        return super().init_validation_tqdm()
