"""A TQDM progress bar that draws no separate bar for validation inside fit, and redraws once per change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from typing_extensions import override

from src.lightning_internals import Tqdm


@contextmanager
def redrawn_once(bar: Tqdm, redraw: bool = True) -> Iterator[None]:
    """Inside, the bar's redraws are held; after, it is redrawn once if any was asked for (and ``redraw``)."""
    if bar.disable:  # also once closed
        yield
        return
    asked = []
    bar.refresh = lambda *args, **kwargs: asked.append(True)  # shadows tqdm's method on this bar only
    try:
        yield
    finally:
        del bar.refresh
        if asked and redraw:
            bar.refresh()


class TrainingProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` whose validation during fit shows only as metrics on the epoch's bar, and
    which redraws that bar once where Lightning's hooks redraw it for each change.

    Validation here is a batch or two per epoch: its own bar would print four lines per epoch to
    a log file and cost about a millisecond per epoch to draw, a few tenths of a per cent of an
    epoch of these models. The sanity check, ``trainer.validate`` and test keep their bars.

    Lightning redraws the epoch's bar six times an epoch of one execution: twice as the epoch
    starts (reset, description), twice at a batch's end (count, metrics), at the end of validation
    and at the end of the epoch. Each redraw writes a line to a log file and costs ~0.1 ms. Here the
    epoch's start and a batch's end redraw once, and the end of validation inside fit not at all:
    the end of the epoch shows its metrics (for validation mid-epoch, the next redraw of the bar).
    """

    @override
    def init_validation_tqdm(self) -> Tqdm:
        if self.trainer.state.fn == "fit":
            return Tqdm(disable=True)
        return super().init_validation_tqdm()

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        # With leave=True Lightning makes a new bar here, drawn as it is made: then nothing is held.
        with redrawn_once(self.train_progress_bar):
            super().on_train_epoch_start(trainer, *args)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        with redrawn_once(self.train_progress_bar):
            super().on_train_batch_end(trainer, pl_module, *args)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking:  # no epoch bar yet, or none to come
            super().on_validation_end(trainer, pl_module)
            return
        with redrawn_once(self.train_progress_bar, redraw=False):
            super().on_validation_end(trainer, pl_module)
