"""ModelCheckpoint whose ``last.ckpt`` really is the last epoch."""
from __future__ import annotations

import os

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class LastAndBestCheckpoint(ModelCheckpoint):
    """Keeps the best checkpoint by the monitored metric and a ``last.ckpt`` of the final state.

    Lightning 2.6 rewrites ``last.ckpt`` only when the top-k improves, so a run whose best epoch
    is not its final one would end with a stale ``last.ckpt`` and resume from the wrong epoch.
    The end of fit writes it once more, and so does an interrupted or crashed fit, so that it can
    be resumed with ``ckpt_path=...``; a non-finite loss leaves the previous ``last.ckpt`` alone,
    since the weights that produced it are no state to resume from. ``best.ckpt`` is never
    overwritten by either.
    """

    def _write_last(self, trainer: pl.Trainer) -> None:
        if self.save_last and self.dirpath and not trainer.fast_dev_run:
            path = os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)
            trainer.save_checkpoint(path)
            self.last_model_path = path

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._write_last(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.training and not isinstance(exception, FloatingPointError):
            self._write_last(trainer)
