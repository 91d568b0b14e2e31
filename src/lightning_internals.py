"""Every use the lab makes of Lightning's private API, fenced in one place.

Lightning does not promise to keep these names; ``pyproject.toml`` pins pytorch-lightning to the
minor versions the tests ran on, and ``tests/test_lightning_internals.py`` fails, naming the
name, when an upgrade removes one of ``RELIED_ON``. Everything else in the lab uses public API only.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

# The bar class TQDMProgressBar draws with; not exported from pytorch_lightning.callbacks.
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm

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


__all__ = [
    "CHECKPOINT_HOOKS",
    "CHECKPOINT_STATE",
    "CURRENT_FX_NAME",
    "RELIED_ON",
    "Tqdm",
    "count_logged_steps",
    "dump_checkpoint",
    "loggers_write_this_step",
]

# (where, name) of every private name above: checked by tests/test_lightning_internals.py.
RELIED_ON = [
    ("pytorch_lightning.callbacks.progress.tqdm_progress", "Tqdm"),
    ("LightningModule", CURRENT_FX_NAME),
    *(("ModelCheckpoint", name) for name in CHECKPOINT_HOOKS),
    *(("ModelCheckpoint", name) for name in CHECKPOINT_STATE),
    ("Trainer", "_checkpoint_connector.dump_checkpoint"),
    ("Trainer", "_logger_connector.should_update_logs"),
    ("Trainer", "fit_loop.epoch_loop._batches_that_stepped"),
]
