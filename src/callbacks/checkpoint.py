"""ModelCheckpoint whose ``last.ckpt`` is the state after the final epoch, and whose saves are
written to disk at most every few seconds."""
from __future__ import annotations

import copy
import os
import time
from functools import cached_property
from typing import Any
from weakref import proxy

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

    Writing a checkpoint costs several milliseconds here (each of its ~50 tensors is a record of
    the file), and the best checkpoint of these small models improves most epochs. So on one
    device a save is held in memory (a copy) and written at most every ``save_interval_s``
    seconds; the end of fit, and an interrupted or crashed fit, write what is held at once. Under
    DDP each save is written when it is made.
    """

    def __init__(self, *args: Any, save_interval_s: float = 10.0, **kwargs: Any) -> None:
        if save_interval_s < 0:
            raise ValueError(f"callbacks.model_checkpoint.save_interval_s={save_interval_s} must be >= 0")
        super().__init__(*args, **kwargs)
        self.save_interval_s = save_interval_s
        self._held: dict[str, dict[str, Any]] = {}
        self._last_write = float("-inf")

    @cached_property
    def state_key(self) -> str:
        # Lightning formats it for every hook call, seven times a step; what it names is fixed at init.
        return super().state_key

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._held.clear()
        self._last_write = float("-inf")

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if trainer.world_size > 1:
            super()._save_checkpoint(trainer, filepath)
            return
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(self.save_weights_only)
        # The dump holds the live weights and optimizer state, which the next step changes.
        self._held[filepath] = copy.deepcopy(checkpoint)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if time.monotonic() - self._last_write >= self.save_interval_s:
            self._write_held(trainer)

    def _write_held(self, trainer: pl.Trainer) -> None:
        for filepath, checkpoint in self._held.items():
            trainer.strategy.save_checkpoint(checkpoint, filepath)
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
        self._held.clear()
        self._last_write = time.monotonic()

    def _remove_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        self._held.pop(filepath, None)
        super()._remove_checkpoint(trainer, filepath)

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
        self._write_held(trainer)
        self._write_last(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._write_held(trainer)  # states of finished epochs: good whatever went wrong since
        # Under DDP the other ranks may not reach the save's barrier after one rank's exception; a fit
        # that fails before its first step (a refused config) has no state worth resuming from.
        resumable = trainer.training and trainer.global_step > 0 and not isinstance(exception, FloatingPointError)
        if resumable and trainer.world_size == 1:
            self._write_last(trainer)
