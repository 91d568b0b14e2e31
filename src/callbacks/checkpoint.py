"""ModelCheckpoint whose ``last.ckpt`` is the state after the final epoch."""
from __future__ import annotations

import os
from functools import cached_property

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class LastAndBestCheckpoint(ModelCheckpoint):
    """Keeps the best checkpoint by the monitored metric and a ``last.ckpt`` of the final state.

    Lightning 2.6 rewrites ``last.ckpt`` only when the top-k improves, so a run whose best epoch
    is not its final one would end with a stale ``last.ckpt``. With ``save_last: link``, a link
    to the newest saved checkpoint stands there during fit (no second serialisation per
    improvement), and the end of fit, or an interrupted or crashed fit, replaces it by a real file
    of the state at that moment, so that ``ckpt_path=.../last.ckpt`` resumes where fit stopped.
    A non-finite loss, or a failure before the first step, leaves it alone: neither leaves a state
    to resume from.
    """

    @cached_property
    def state_key(self) -> str:
        # Lightning formats it for every hook call, seven times a step; what it names is fixed at init.
        return super().state_key

    def _write_last(self, trainer: pl.Trainer) -> None:
        if not self.save_last or not self.dirpath or trainer.fast_dev_run:
            return
        path = os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)
        if trainer.is_global_zero and os.path.islink(path):
            os.remove(path)  # writing through the link would overwrite the checkpoint it points to
        trainer.save_checkpoint(path)
        self.last_model_path = path

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._write_last(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Under DDP the other ranks may not reach the save's barrier after one rank's exception; a fit
        # that fails before its first step (a refused config) has no state worth resuming from.
        resumable = trainer.training and trainer.global_step > 0 and not isinstance(exception, FloatingPointError)
        if resumable and trainer.world_size == 1:
            self._write_last(trainer)
