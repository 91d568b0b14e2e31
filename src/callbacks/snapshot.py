"""Base of the callbacks that show a few fixed validation examples in TensorBoard."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from src.data.batch import SeqBatch

log = logging.getLogger(__name__)


class ValidationSnapshot(pl.Callback):
    """Every ``every_n_epochs`` validation epochs, and after the last epoch, ``snapshot`` gets the
    TensorBoard writer and the first ``n_examples`` validation examples, with the module in eval
    mode and gradients off. A run it cannot serve (no TensorBoard logger, data or net of another
    kind, see ``skip_reason``) is skipped with one log line. ``config_key`` names it in errors.
    """

    config_key = "callbacks.<name>"

    def __init__(self, every_n_epochs: int, n_examples: int, tag: str) -> None:
        if every_n_epochs < 1 or n_examples < 1:
            raise ValueError(
                f"{self.config_key}.every_n_epochs={every_n_epochs} and n_examples={n_examples} must be >= 1"
            )
        self.every_n_epochs, self.n_examples, self.tag = every_n_epochs, n_examples, tag
        self._skipped = False

    def skip_reason(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch) -> str | None:
        """Why this run gets no snapshot, or None."""
        return None

    def snapshot(
        self, writer: SummaryWriter, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch
    ) -> None:
        raise NotImplementedError

    def prepare(self, trainer: pl.Trainer, batch: SeqBatch) -> None:
        """At the start of fit, with the examples on the CPU: build what every snapshot reuses (a one-time
        cost, such as a figure's first draw, then falls in set-up rather than in the first epoch)."""

    def _writer_and_examples(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> tuple[SummaryWriter, SeqBatch] | None:
        writer = next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        batch = trainer.datamodule.examples("val", self.n_examples)
        reason = "no TensorBoard logger is configured" if writer is None else None
        reason = reason or self.skip_reason(trainer, pl_module, batch)
        if reason:
            if not self._skipped:
                log.info("%s skipped: %s", type(self).__name__, reason)
                self._skipped = True
            return None
        return writer, batch

    @override
    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        found = self._writer_and_examples(trainer, pl_module)
        if found is not None:
            self.prepare(trainer, found[1].to("cpu"))

    @override
    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        if trainer.sanity_checking or (epoch % self.every_n_epochs and not last):
            return
        found = self._writer_and_examples(trainer, pl_module)
        if found is None:
            return
        writer, batch = found
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                self.snapshot(writer, trainer, pl_module, batch.to(pl_module.device))
        finally:
            pl_module.train(was_training)
