"""Every use the lab makes of Lightning's private API, fenced in one place, and the one place that does
what Lightning would do itself (a manual optimizer step without its hook dispatch).

Lightning does not promise to keep these names; ``pyproject.toml`` pins pytorch-lightning to the
minor versions the tests ran on, and ``tests/test_lightning_internals.py`` fails, naming the
name, when an upgrade removes one of ``RELIED_ON`` or changes the hooks an optimizer step calls.
Everything else in the lab uses public API only.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

# The bar class TQDMProgressBar draws with; not exported from pytorch_lightning.callbacks.
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.profilers import PassThroughProfiler
from pytorch_lightning.strategies import SingleDeviceStrategy, Strategy
from pytorch_lightning.trainer.connectors.logger_connector.result import _ResultMetric

# LightningModule attribute that Lightning sets around each of the ~45 hook calls of a step; the
# tasks set it straight into the instance dict (see SeqBatchTask.__setattr__).
CURRENT_FX_NAME = "_current_fx_name"

# ModelCheckpoint's private hooks that LastAndBestCheckpoint overrides or calls, with their parameters
# as the override relies on them, and the private state it reads and writes beside them.
CHECKPOINT_HOOKS = {
    "_save_checkpoint": ("self", "trainer", "filepath"),
    "_save_last_checkpoint": ("self", "trainer", "monitor_candidates"),
    "_remove_checkpoint": ("self", "trainer", "filepath"),
    "_link_checkpoint": ("trainer", "filepath", "linkpath"),
}
CHECKPOINT_STATE = ("_last_global_step_saved", "_last_checkpoint_saved")


def dump_checkpoint(trainer: pl.Trainer, weights_only: bool) -> dict[str, Any]:
    """The checkpoint Lightning would write now, as a dict (what ModelCheckpoint._save_checkpoint saves)."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only)


def loggers_write_this_step(trainer: pl.Trainer) -> bool:
    """Whether Lightning writes what a training step logs to the loggers (its own rule: every
    ``trainer.log_every_n_steps`` steps, and every step of a fast_dev_run)."""
    return bool(trainer.fast_dev_run) or trainer._logger_connector.should_update_logs


def count_logged_steps(trainer: pl.Trainer, steps: int) -> None:
    """Make a training step that took ``steps`` optimizer steps count that many on the loggers' x axis
    (Lightning counts one per step it runs, in ``fit_loop.epoch_loop._batches_that_stepped``, which
    its checkpoints save and restore)."""
    trainer.fit_loop.epoch_loop._batches_that_stepped += steps - 1


def before_batch_transfer(module: pl.LightningModule, batch: Any) -> Any:
    """``batch`` through ``on_before_batch_transfer``, the datamodule's or the module's as Lightning picks
    it: Lightning calls it on every batch before moving it, but leaves it to a training step that takes
    the loader itself (``dataloader_iter``), as ``SeqBatchTask.training_steps`` does."""
    return module._on_before_batch_transfer(batch, dataloader_idx=0)


# The hooks Lightning calls on a batch on its way to the device (the datamodule's where it overrides one,
# else the module's), besides the precision plugin's convert_input and the strategy's batch_to_device.
BATCH_TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


def batches_need_lightning(trainer: pl.Trainer, module: pl.LightningModule, plain: tuple[type, ...]) -> bool:
    """Whether a batch that a training step takes itself needs Lightning's transfer (``before_batch_transfer``,
    ``convert_input``, ``batch_to_device``, ~50 us of hook dispatch): in any precision but plain, with a
    strategy that moves batches its own way, or where the module or the datamodule overrides one of
    ``BATCH_TRANSFER_HOOKS`` beyond Lightning's own and those of the classes in ``plain`` (whose
    ``transfer_batch_to_device`` is ``batch.to(device)``). Otherwise ``batch.to(device)`` does the same."""
    datamodule = trainer.datamodule
    return (
        type(trainer.precision_plugin).convert_input is not Precision.convert_input
        or type(trainer.strategy).batch_to_device is not Strategy.batch_to_device
        or any(
            getattr(type(owner), hook) not in {getattr(base, hook, None) for base in (*bases, *plain)}
            for owner, bases in ((module, (pl.LightningModule,)), (datamodule, (pl.LightningDataModule,)))
            if owner is not None
            for hook in BATCH_TRANSFER_HOOKS
        )
    )


# The hooks that LightningModule.manual_backward and LightningOptimizer.step call on the callbacks and the
# module, besides the backward pass and the optimizer's own step (tests/test_lightning_internals.py
# records what Lightning calls, and fails when that changes).
OPTIMIZER_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def steps_need_lightning(trainer: pl.Trainer, module: pl.LightningModule, base: type) -> bool:
    """Whether a manual optimizer step needs Lightning's dispatch (``manual_backward``, then
    ``LightningOptimizer.step``): on more than one device, in any precision but plain, under a profiler,
    with a callback that overrides one of ``OPTIMIZER_STEP_HOOKS`` or a module that overrides one of
    them (or ``backward``) beyond ``base``. Otherwise zero_grad, ``loss.backward()``, the module's
    ``on_before_optimizer_step``, the optimizer's step and ``count_optimizer_step`` do the same."""
    return (
        type(trainer.strategy) is not SingleDeviceStrategy
        or type(trainer.precision_plugin) is not Precision
        or type(trainer.profiler) is not PassThroughProfiler
        or any(
            getattr(type(cb), hook) is not getattr(pl.Callback, hook)
            for cb in trainer.callbacks
            for hook in OPTIMIZER_STEP_HOOKS
        )
        or any(getattr(type(module), hook) is not getattr(base, hook) for hook in (*OPTIMIZER_STEP_HOOKS, "backward"))
    )


def count_optimizer_step(trainer: pl.Trainer) -> None:
    """Count one optimizer step as ``LightningOptimizer.step`` does under manual optimization (its
    progress gives ``trainer.global_step``, and checkpoints save and restore it)."""
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    progress.increment_ready()
    progress.increment_completed()


# Where a logged value's record (_ResultMetric) keeps the device remember_result_moves last moved it to.
MOVED_TO = "_lab_moved_to"


def remember_result_moves() -> None:
    """Make the record of a logged value skip a move to the device it already is on.

    Every ``self.log`` call moves the value's record to the value's device (``_ResultCollection.log``),
    and ``_ResultMetric.to`` walks and copies the record's whole instance dict to do it: ~0.2 ms, two
    thirds of a ``self.log`` on a small CPU, spent on moves to where the record already is. The record
    now remembers the device of its last move, and a move there again is skipped. Lightning moves a
    record's tensors only through ``to`` (a reset refills them from defaults moved with them; it never
    moves a record as a submodule or unpickles one elsewhere), so what it remembers holds. Idempotent;
    installed once for the process, as Lightning's classes are shared.
    """
    move = _ResultMetric.to
    if getattr(move, "remembers_device", False):
        return

    def to(self: _ResultMetric, *args: Any, **kwargs: Any) -> _ResultMetric:
        if len(args) != 1 or kwargs or not isinstance(args[0], (torch.device, str)):
            self.__dict__.pop(MOVED_TO, None)
            return move(self, *args, **kwargs)
        device = torch.device(args[0])
        if self.__dict__.get(MOVED_TO) != device:
            move(self, device)
            self.__dict__[MOVED_TO] = device
        return self

    to.remembers_device = True
    _ResultMetric.to = to


__all__ = [
    "BATCH_TRANSFER_HOOKS",
    "CHECKPOINT_HOOKS",
    "CHECKPOINT_STATE",
    "CURRENT_FX_NAME",
    "OPTIMIZER_STEP_HOOKS",
    "RELIED_ON",
    "Tqdm",
    "batches_need_lightning",
    "before_batch_transfer",
    "count_logged_steps",
    "count_optimizer_step",
    "dump_checkpoint",
    "loggers_write_this_step",
    "remember_result_moves",
    "steps_need_lightning",
]

# (where, name) of every private name above: checked by tests/test_lightning_internals.py.
RELIED_ON = [
    ("pytorch_lightning.callbacks.progress.tqdm_progress", "Tqdm"),
    ("pytorch_lightning.trainer.connectors.logger_connector.result", "_ResultMetric.to"),
    ("LightningModule", CURRENT_FX_NAME),
    ("LightningModule", "_on_before_batch_transfer"),
    *(("ModelCheckpoint", name) for name in CHECKPOINT_HOOKS),
    *(("ModelCheckpoint", name) for name in CHECKPOINT_STATE),
    ("Trainer", "_checkpoint_connector.dump_checkpoint"),
    ("Trainer", "_logger_connector.should_update_logs"),
    ("Trainer", "fit_loop.epoch_loop._batches_that_stepped"),
    ("Trainer", "fit_loop.epoch_loop.manual_optimization.optim_step_progress"),
]
