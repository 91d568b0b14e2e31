"""ModelCheckpoint whose ``last.ckpt`` is the state after the latest epoch, whose files are written on a
background thread, and which resumes a run's best checkpoint in a new run dir."""

from __future__ import annotations

import copy
import io
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from typing import Any
from weakref import proxy

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger
from typing_extensions import override

from src.checks import check_number
from src.lightning_internals import dump_checkpoint


class LastAndBestCheckpoint(ModelCheckpoint):
    """Keeps the best checkpoint by the monitored metric and a ``last.ckpt`` of the latest state.

    ``last.ckpt`` is saved after an epoch when a write is due (below): a link to ``best.ckpt`` when that
    epoch improved it (one write serves both), else a file of its own. Lightning 2.6 alone rewrites it
    only when the top-k improves. The end of fit, and an interrupted or crashed fit, replace it by a
    real file of the state at that moment. A non-finite loss, or a failure before the first step,
    leaves it alone: neither leaves a state to resume from. ``ckpt_path=<run>/checkpoints/last.ckpt``
    resumes there.

    On one device a save is copied when it is made (``snapshot``: ~0.3 ms for these nets, where
    serialising it takes ~0.9 ms), serialised once its write is due, and its file written on a
    background thread (a disk here takes 2-20 ms, more when busy): beside the file, then renamed over
    it, so a kill mid-write leaves the earlier file whole. Writes, links and removals keep the order
    they were made in (a link after its file, the removal of a replaced best after the best that
    replaced it), so the disk always holds a whole best and last. Writes are due once
    ``save_interval_s`` seconds have passed since the last, checked at the end of each training
    epoch: then what is held is written and ``last.ckpt`` is saved from the epoch just ended. Until
    then a new best is copied and held, and ``last.ckpt`` is not saved at all, so that epochs
    shorter than the interval do not pay a save each. A kill loses at most the interval, the epoch in
    progress and the write in flight; 0 saves and writes every epoch. The end of fit, and an
    interrupted or crashed fit, write what is held and wait for every write. Under DDP each save is
    written, by Lightning, when it is made.

    A run that resumes a checkpoint of another run dir copies that run's best checkpoint into its
    own and goes on comparing against its score, so that it ends with the best checkpoint the
    uninterrupted run would have; the earlier run's files are only read.
    """

    def __init__(self, *args: Any, save_interval_s: float = 1.0, **kwargs: Any) -> None:
        check_number("callbacks.model_checkpoint.save_interval_s", save_interval_s, 0)
        super().__init__(*args, **kwargs)
        self.save_interval_s = save_interval_s
        # path -> checkpoint (a snapshot), the path it links to, or None: remove the file
        self._held: dict[str, dict[str, Any] | str | None] = {}
        self._last_pending = False  # a save of last.ckpt waits for the next write
        self._last_write = float("-inf")
        self._files = OrderedFileWriter()

    @cached_property
    def state_key(self) -> str:
        # Lightning formats it for every hook call, seven times a step; what it names is fixed at init.
        return super().state_key

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._held.clear()
        self._last_pending = False
        self._last_write = float("-inf")

    # The three private hooks below are ModelCheckpoint's (src/lightning_internals.py lists them and
    # what they read): where it saves, saves last.ckpt, and removes a checkpoint that left the top k.
    @override
    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if trainer.world_size > 1:
            super()._save_checkpoint(trainer, filepath)
            return
        # Copied now: the dump holds the live weights and optimizer state, which the next step changes.
        checkpoint = snapshot(dump_checkpoint(trainer, self.save_weights_only))
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        self._hold(trainer, filepath, checkpoint)

    @override
    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        if trainer.world_size > 1 or not self.save_last:
            super()._save_last_checkpoint(trainer, monitor_candidates)
            return
        path = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        self.last_model_path = path
        saved_now = self._last_global_step_saved == trainer.global_step and self._last_checkpoint_saved != path
        self._last_pending = False
        if saved_now and self.save_last == "link":
            self._hold(trainer, path, self._last_checkpoint_saved)
        elif self._write_due():
            self._save_checkpoint(trainer, path)
        else:  # saved, with the state of the epoch then ending, once a write is due
            self._last_pending = True

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # Here, after Lightning's saves of the epoch (made here, or at validation end): Lightning skips
        # the saves of a step that already has one, so a last.ckpt saved before them would cost the best.
        if not self._write_due():
            return
        if self._last_pending:
            self._save_checkpoint(trainer, self.last_model_path)
            self._last_pending = False
        if self._held:
            self._write_held(trainer)

    def _write_due(self) -> bool:
        return time.monotonic() - self._last_write >= self.save_interval_s

    def _hold(self, trainer: pl.Trainer, path: str, held: dict[str, Any] | str | None) -> None:
        # Last in the order of writes, whatever was held for the path before: a link follows the file it
        # points to and a removal the save that replaced it, so the disk keeps a whole best and last.
        # With no interval every write is due at once.
        self._held.pop(path, None)
        self._held[path] = held
        if not self.save_interval_s:
            self._write_held(trainer)

    def _write_held(self, trainer: pl.Trainer) -> None:
        for filepath, held in self._held.items():
            if held is None:
                self._files.submit(super()._remove_checkpoint, trainer, filepath)
                continue
            if isinstance(held, str):
                self._files.submit(self._link_checkpoint, trainer, held, filepath)
                continue
            self._files.submit(write_atomically, serialised(held), filepath)
            for logger in trainer.loggers:
                if reads_checkpoint_files(logger):
                    self._files.wait()
                logger.after_save_checkpoint(proxy(self))
        self._held.clear()
        self._last_write = time.monotonic()

    @override
    def _remove_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if trainer.world_size > 1:
            super()._remove_checkpoint(trainer, filepath)
            return
        self._hold(trainer, filepath, None)  # written after the saves held before it: the best that replaced it

    def _write_last(self, trainer: pl.Trainer) -> None:
        if not self.save_last or not self.dirpath or trainer.fast_dev_run:
            return
        path = os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)
        if trainer.world_size > 1:
            if trainer.is_global_zero and os.path.islink(path):
                os.remove(path)  # writing through the link would overwrite the checkpoint it points to
            trainer.save_checkpoint(path, weights_only=self.save_weights_only)
        else:
            self._files.submit(write_atomically, serialised(dump_checkpoint(trainer, self.save_weights_only)), path)
        self.last_model_path = path

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._write_held(trainer)
        self._write_last(trainer)
        self._files.wait()

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._write_held(trainer)  # states of finished epochs: good whatever went wrong since
        # Under DDP the other ranks may not reach the save's barrier after one rank's exception; a fit
        # that fails before its first step (a refused config) has no state worth resuming from.
        resumable = trainer.training and trainer.global_step > 0 and not isinstance(exception, FloatingPointError)
        if resumable and trainer.world_size == 1:
            self._write_last(trainer)
        try:
            self._files.wait()
        except OSError as error:  # the fit's own exception is the one to report
            log.error("a checkpoint could not be written: %s", error)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._files.close()

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning keeps only best_model_path when the run dir changed, so a resumed run would take its
        # first epoch for the best. Bring the earlier run's checkpoints over and keep comparing with them.
        earlier = state_dict.get("dirpath")
        if earlier and self.dirpath and os.path.abspath(earlier) != os.path.abspath(self.dirpath):
            state_dict = self._adopt(state_dict, earlier)
        super().load_state_dict(state_dict)

    def _adopt(self, state_dict: dict[str, Any], earlier: str) -> dict[str, Any]:
        """``state_dict`` with the checkpoints it names copied from ``earlier`` into this run's dirpath."""
        os.makedirs(self.dirpath, exist_ok=True)

        def moved(path: str) -> str:
            if not path or os.path.dirname(os.path.abspath(path)) != os.path.abspath(earlier):
                return path
            new = os.path.join(self.dirpath, os.path.basename(path))
            if os.path.isfile(path) and not os.path.exists(new) and not path.endswith("last.ckpt"):
                shutil.copyfile(path, new)
            return new

        adopted = dict(state_dict, dirpath=self.dirpath)
        adopted["best_k_models"] = {moved(k): v for k, v in state_dict.get("best_k_models", {}).items()}
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            adopted[key] = moved(state_dict.get(key, ""))
        return adopted


log = logging.getLogger(__name__)


def serialised(checkpoint: dict[str, Any]) -> bytes:
    """The bytes of ``checkpoint`` as ``torch.save`` writes them."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def snapshot(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``checkpoint`` (a fresh dump) that later steps leave alone, in a third of the time
    serialising it takes: the weights and the optimizer's per-parameter state, which every step changes
    in place, are cloned tensor by tensor (one clone per view, so tied weights stay tied in the file);
    the rest, small, is deep-copied."""
    clones: dict[tuple, torch.Tensor] = {}

    def cloned(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return copy.deepcopy(value)
        view = (value.untyped_storage().data_ptr(), value.storage_offset(), value.shape, value.stride(), value.dtype)
        if view not in clones:
            clones[view] = value.clone()
        return clones[view]

    live = ("state_dict", "optimizer_states")
    copied = copy.deepcopy({key: value for key, value in checkpoint.items() if key not in live})
    if "state_dict" in checkpoint:
        weights = copied["state_dict"] = copy.copy(checkpoint["state_dict"])  # keeps torch's _metadata
        for name, value in weights.items():
            weights[name] = cloned(value)
    if "optimizer_states" in checkpoint:
        copied["optimizer_states"] = [
            {
                **copy.deepcopy({key: value for key, value in state.items() if key != "state"}),
                "state": {index: {key: cloned(v) for key, v in kept.items()} for index, kept in state["state"].items()},
            }
            for state in checkpoint["optimizer_states"]
        ]
    return copied


def write_atomically(data: bytes, path: str) -> None:
    """Write ``data`` beside ``path``, then rename it over ``path`` (a link there is replaced, not
    written through): a kill mid-write leaves the earlier file whole."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = path + ".partial"
    with open(partial, "wb") as file:
        file.write(data)
    os.replace(partial, path)


def reads_checkpoint_files(logger: Logger) -> bool:
    """Whether the logger may read a checkpoint when told of its save (to upload it, say): every
    logger but the two that do nothing then."""
    return not isinstance(logger, (TensorBoardLogger, CSVLogger))


class OrderedFileWriter:
    """File operations run one after another, in the order submitted, on one background thread.

    A failed operation raises its error on the caller's thread at the next ``submit`` or ``wait``.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []

    def submit(self, operation: Callable[..., None], *args: Any) -> None:
        self._raise_failures(wait=False)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending.append(self._pool.submit(operation, *args))

    def wait(self) -> None:
        """Returns once every submitted operation has run; raises the first one's error, if any failed."""
        self._raise_failures(wait=True)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _raise_failures(self, wait: bool) -> None:
        finished = [future for future in self._pending if wait or future.done()]
        self._pending = [future for future in self._pending if future not in finished]
        for future in finished:
            future.result()
