"""What every task of the lab shares: optimizer wiring, batch transfer, one step for train/val/test."""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Callable, Iterator
from typing import Any, Literal, get_args

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from typing_extensions import override

from src.checks import ConfigError, check_choice, check_number
from src.data.batch import SeqBatch
from src.data.module import SplitsDataModule
from src.lightning_internals import (
    CURRENT_FX_NAME,
    batches_need_lightning,
    before_batch_transfer,
    count_logged_steps,
    count_optimizer_step,
    loggers_write_this_step,
    remember_result_moves,
    steps_need_lightning,
)
from src.models.tasks.contract import check_net_declares, check_net_fits_data

# Set on every hook call or optimizer step: SeqBatchTask.__setattr__ writes them straight into the instance dict.
PLAIN_ATTRIBUTES = frozenset({CURRENT_FX_NAME, "_check_loss_now", "_log_loss_now"})

# torch.compile's modes; model.compile=true is "default". "reduce-overhead" adds CUDA graphs on a GPU.
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


def rng_states() -> dict[str, Any]:
    """Every global generator's state (torch, CUDA, numpy, Python), in types torch's safe unpickler loads."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Put back what ``rng_states`` returned."""
    torch.set_rng_state(states["torch"])
    if states["torch.cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def step_scheduler(scheduler: Any, metrics: dict[str, torch.Tensor], monitor: str) -> None:
    """One epoch step of ``scheduler``; a ReduceLROnPlateau reads ``metrics[monitor]``."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step()
    elif monitor in metrics:
        scheduler.step(metrics[monitor])
    else:
        raise ConfigError(
            f"model.monitor={monitor} was not logged this epoch, so ReduceLROnPlateau cannot step: "
            f"logged are {sorted(metrics)}"
        )


def step_epoch_schedulers_into(checkpoint: dict[str, Any], trainer: pl.Trainer, monitor: str) -> None:
    """Write into ``checkpoint`` the schedulers and learning rates as they will be once this epoch's
    scheduler step has run.

    Checkpoints are saved at the end of validation, before Lightning steps the epoch-interval
    schedulers; a run resumed from such a checkpoint skips that step (Lightning's fit loop does not
    repeat epoch-end work on restart), so without this a ReduceLROnPlateau would lag one epoch behind
    the run that was never stopped. Copies are stepped; the live ones are left to Lightning.
    """
    progress = trainer.fit_loop.epoch_progress.current
    if not (trainer.fit_loop.epoch_loop.done and progress.completed < progress.started):
        return  # mid-epoch (an interrupted fit), or after the epoch's end: nothing pending
    for index, config in enumerate(trainer.lr_scheduler_configs):
        if config.interval != "epoch" or (trainer.current_epoch + 1) % config.frequency:
            continue
        live = config.scheduler.optimizer
        scheduler, optimizer = copy.deepcopy((config.scheduler, live))
        step_scheduler(scheduler, trainer.callback_metrics, monitor)
        checkpoint["lr_schedulers"][index] = scheduler.state_dict()
        saved_groups = checkpoint["optimizer_states"][trainer.optimizers.index(live)]["param_groups"]
        for saved, stepped in zip(saved_groups, optimizer.param_groups):
            saved["lr"] = stepped["lr"]


class SeqBatchTask(pl.LightningModule):
    """Base of the LightningModules that train a net on ``SeqBatch`` data.

    Subclasses implement ``_shared_step(batch, stage)`` for ``train``, ``val`` and ``test``, report
    its loss with ``log_loss``, update ``self.metrics[stage]`` (val and test), and keep ``monitor``
    (the metric a scheduler such as ReduceLROnPlateau watches) in their hyper-parameters. The
    optimizer and scheduler factories are partials: they are kept out of the checkpoint's
    hyper-parameters so that checkpoints load with torch's safe weights-only unpickler.

    Steps per execution: Lightning's own work around a step (hook dispatch, the optimizer closure,
    progress and logging) costs about 1.5 ms here, a third of a step of the smallest nets. With
    ``steps_per_execution`` = K > 1 (as Keras' option of that name), each Lightning step takes up to K
    batches and makes one optimizer step for each, through Lightning's manual optimization: the same
    batches, the same order, the same updates as K = 1. ``trainer.global_step``, ``max_steps``,
    ``log_every_n_steps`` and the loggers' x axis still count optimizer steps; callbacks' batch hooks
    and ``trainer.val_check_interval`` (as a count) see one call per K batches; the NaN check runs at
    the end of each K. The task clips gradients itself (``model.gradient_clip``) and steps the
    epoch-interval schedulers; ``trainer.gradient_clip_val`` and ``accumulate_grad_batches`` need K = 1.
    Where no callback overrides a hook that ``manual_backward`` and ``LightningOptimizer.step`` call
    (on one device, plain precision, no profiler: ``steps_need_lightning``), each optimizer step skips
    their dispatch (~0.2 ms, 7% of the smallest nets' step) and does the same work itself; likewise each
    batch skips Lightning's transfer hooks where neither module nor datamodule overrides one and the
    precision converts no inputs (``batches_need_lightning``).

    Logging: every ``self.log`` call costs ~0.3 ms on a small CPU (Lightning moves its result record
    to the value's device each time; ``remember_result_moves`` skips the moves to where the record
    already is, two thirds of that), a tenth of a step of the smallest nets, and even a torchmetrics
    ``update`` costs a hundred microseconds. So a step adds its loss to a running sum,
    and each epoch hands the sums to the stage's ``MeanMetric`` and logs once: ``train/loss_epoch``,
    ``<stage>/loss`` and ``<stage>/<metric>``. ``train/loss_step`` is logged only on the steps
    Lightning writes to the loggers (every ``trainer.log_every_n_steps``); with K > 1 those steps'
    losses are written together at the end of their execution (also when it ends in an error), and
    the progress bar shows the last once per execution.
    """

    metrics_in_progress_bar = False
    batch_kind: str  # "real" or "tokens": the data's batch_kind must match (checked before anything is built)
    reconstruction_only = False  # True: the target must be the source itself (checked before anything is built)
    # The net-data contract (src/models/tasks/contract.py): the Protocols the net and the datamodule
    # must satisfy, and the sizes both declare that must agree (checked in setup, before the first step).
    net_contract: type
    data_contract: type
    shared_sizes: tuple[str, ...] = ()

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        steps_per_execution: int = 1,
        compile: bool | CompileMode = False,
    ) -> None:
        super().__init__()
        remember_result_moves()  # see Logging below
        check_net_declares(net, self.net_contract)
        self.steps_per_execution = check_number("model.steps_per_execution", steps_per_execution, 1, integer=True)
        if self.steps_per_execution > 1:
            self.automatic_optimization = False
            # Lightning hands a training_step with a dataloader_iter parameter the loader itself.
            self.training_step = self.training_steps
        self.net = net  # first: the model summary lists it before the metric containers
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        modes = (False, True, *get_args(CompileMode))
        self.compile_net, self._net_compiled = check_choice("model.compile", compile, modes), False
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.metrics = nn.ModuleDict()
        # The resolved model and data configs, kept in every checkpoint so that it can be used alone.
        self.lab_config: dict[str, Any] = {}
        self._loss_sums: dict[str, list] = {}  # stage -> [sum of loss * batch size (a tensor), examples]
        self._rng_states_to_restore: dict[str, Any] | None = None
        self._check_loss_now = False  # set before each training step: check_finite reads the loss there
        self._log_loss_now = False  # under manual optimization, set before each step: its loss goes to the loggers
        self._losses_to_write: list[tuple[int, torch.Tensor]] = []  # (step, loss) written at the execution's end
        self._schedulers_stepped_epoch = -1  # under manual optimization: the epoch whose schedulers stepped
        self._epoch_ran_out = False  # under manual optimization: the last execution took the epoch's last batch
        self._steps_need_lightning = True  # under manual optimization: decided when training starts
        self._batches_need_lightning = True  # likewise

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets a private attribute around each of the ~45 hook calls of a step, and the task two
        # flags before each optimizer step; nn.Module's __setattr__ checks for parameters, modules and
        # buffers (~5 us a call, up to 15 between a step's kernels), ~2% of a small step.
        if name in PLAIN_ATTRIBUTES:
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    def set_metrics(self, metrics: dict[str, Any]) -> None:
        """The metrics (name -> torchmetrics ``Metric``) that val and test compute, as ``<stage>/<name>``."""
        self.metrics = nn.ModuleDict(
            {stage: MetricCollection(metrics, prefix=f"{stage}/").clone() for stage in ("val", "test")}
        )

    def _shared_step(self, batch: SeqBatch, stage: str) -> torch.Tensor:
        raise NotImplementedError

    @override
    def configure_model(self) -> None:
        # In place (nn.Module.compile): the net's state_dict keys, and so its checkpoints, stay the eager net's.
        if self.compile_net and not self._net_compiled:
            self.net.compile(mode=None if self.compile_net is True else self.compile_net)
            self._net_compiled = True

    @override
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is None:
            raise ConfigError(
                f"{type(self).__name__} trains on a datamodule: pass datamodule= to the Trainer's fit or test"
            )
        check_net_fits_data(self.net, datamodule, self.data_contract, self.shared_sizes)

    def check_finite(self, loss: torch.Tensor, advice: str) -> None:
        """Stop after a non-finite training loss, saying where and what to change.

        Reading a loss on the host waits for the device, so it is read only on the steps whose
        loss the loggers write anyway and on each epoch's last step, before validation and the
        checkpoint see the weights (with ``steps_per_execution`` > 1: on the last step of each
        execution): a NaN is noticed at most ``log_every_n_steps - 1`` steps late.
        The epoch's running sum is checked, so a NaN on an unchecked step is not missed.
        """
        if not self._check_loss_now:
            return
        total = self._loss_sums["train"][0] + loss.detach() if "train" in self._loss_sums else loss.detach()
        if not torch.isfinite(total):
            callback = self.trainer.checkpoint_callback
            saved = (callback.last_model_path if isinstance(callback, ModelCheckpoint) else "") or "none yet"
            when = (
                f"every trainer.log_every_n_steps={self.trainer.log_every_n_steps} steps and at each epoch's end"
                if self.automatic_optimization
                else f"after every model.steps_per_execution={self.steps_per_execution} steps and at each epoch's end"
            )
            raise FloatingPointError(
                f"train/loss is {total.item()} at epoch {self.current_epoch}, step {self.global_step} "
                f"(checked {when}): {advice}; last good checkpoint: {saved}"
            )

    def log_loss(self, loss: torch.Tensor, stage: str, batch_size: int) -> None:
        """Adds a step's loss to its stage's epoch mean; logs a training step's loss when loggers write."""
        sums = self._loss_sums.get(stage)
        if sums is None:
            sums = self._loss_sums[stage] = [torch.zeros((), device=loss.device), 0]
        sums[0].add_(loss.detach(), alpha=batch_size)  # in place: one op a step, not three
        sums[1] += batch_size
        if stage != "train":
            return
        if self.automatic_optimization:
            if loggers_write_this_step(self.trainer):
                self.log("train/loss_step", loss, prog_bar=True, batch_size=batch_size)
        else:
            # Lightning writes what a step logs once per execution: every log_every_n_steps-th step's loss
            # goes to the loggers at the execution's end, and the progress bar, redrawn once per
            # execution, gets its last.
            if self._log_loss_now:
                self._losses_to_write.append((self.global_step, loss.detach()))
            if self._check_loss_now:
                self.log("train/loss_step", loss, prog_bar=True, logger=False, batch_size=batch_size)

    def running_loss(self, stage: str) -> float | None:
        """The mean loss of the stage's steps so far this epoch (None before its first step)."""
        if stage not in self._loss_sums:
            return None
        total, count = self._loss_sums[stage]
        return float(total / count)

    def _log_epoch(self, stage: str) -> None:
        if stage not in self._loss_sums:
            return
        total, count = self._loss_sums.pop(stage)
        mean = getattr(self, f"{stage}_loss")
        mean.update(total / count, count)
        # Logged as Metric objects, Lightning computes them (synchronised under DDP) and resets them.
        name = "train/loss_epoch" if stage == "train" else f"{stage}/loss"
        self.log(name, mean, prog_bar=stage != "train", batch_size=count)
        if stage in self.metrics:
            self.log_dict(self.metrics[stage], prog_bar=self.metrics_in_progress_bar)

    @override
    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        if not self.automatic_optimization and self._epoch_ran_out:  # not when max_steps stopped it early
            self._step_epoch_schedulers()

    def _step_epoch_schedulers(self) -> None:
        # What Lightning does for automatic optimization after this hook (the checkpoints saved at
        # this epoch's end then hold the stepped schedulers: see on_save_checkpoint). Under manual
        # optimization Lightning keeps no interval, frequency or monitor: every scheduler here is per epoch.
        for config in self.trainer.lr_scheduler_configs:
            step_scheduler(config.scheduler, self.trainer.callback_metrics, self.hparams.monitor)
        self._schedulers_stepped_epoch = self.current_epoch

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The val metrics this state scored (metrics.json reports the tested checkpoint's), and every
        # generator's state: a resumed run draws the same dropout masks and coins as one never stopped.
        metrics = self.trainer.callback_metrics
        checkpoint["val_metrics"] = {k: float(v) for k, v in metrics.items() if k.startswith("val/") and v.numel() == 1}
        checkpoint["rng_states"] = rng_states()
        if self._schedulers_stepped_epoch != self.current_epoch:
            step_epoch_schedulers_into(checkpoint, self.trainer, self.hparams.monitor)
        if self.lab_config:  # the resolved model and data configs: the checkpoint can be used alone
            checkpoint["lab_config"] = self.lab_config

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_states_to_restore = checkpoint.get("rng_states")

    @override
    def on_train_epoch_start(self) -> None:
        # Restored here, not on load: building the model and the sanity check draw numbers in between.
        if self._rng_states_to_restore is not None:
            set_rng_states(self._rng_states_to_restore)
            self._rng_states_to_restore = None

    @override
    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    @override
    def training_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        last_batch = batch_idx + 1 >= self.trainer.num_training_batches
        self._check_loss_now = last_batch or loggers_write_this_step(self.trainer)
        return self._shared_step(batch, "train")

    def training_steps(self, dataloader_iter: Iterator[tuple[SeqBatch, int, int]]) -> None:
        """Up to ``steps_per_execution`` optimizer steps, one per batch (manual optimization)."""
        trainer, optimizer = self.trainer, self.optimizers()
        # Read once an execution: each of these walks Lightning's loops or strategy (~3 us a read).
        first_step, log_every, device = self.global_step, trainer.log_every_n_steps, trainer.strategy.root_device
        max_steps = trainer.max_steps if trainer.max_steps >= 0 else float("inf")
        lightning_moves, to_device = self._batches_need_lightning, device.type != "cpu"
        try:
            for taken in range(1, self.steps_per_execution + 1):
                batch, _, _ = next(dataloader_iter)
                if lightning_moves:
                    batch = before_batch_transfer(self, trainer.precision_plugin.convert_input(batch))
                    batch = trainer.strategy.batch_to_device(batch)
                elif to_device:  # the loaders hand out batches on the CPU (or, data.on_device, on the device)
                    batch = batch.to(device)
                step = first_step + taken  # global_step once this step is taken
                last = taken == self.steps_per_execution or dataloader_iter.done or step >= max_steps
                self._check_loss_now, self._log_loss_now = last, step % log_every == 0
                loss = self._shared_step(batch, "train")
                if self._steps_need_lightning:
                    optimizer.zero_grad()
                    self.manual_backward(loss)
                    optimizer.step()  # clips first: see on_before_optimizer_step
                else:
                    self._optimizer_step(loss, optimizer.optimizer)
                if last:
                    break
        except BaseException:
            # The curve up to a failure (a NaN) is what explains it; a logger failing now must not replace it.
            with contextlib.suppress(Exception):
                self._write_step_losses()
            raise
        self._write_step_losses()
        self._epoch_ran_out = dataloader_iter.done
        count_logged_steps(trainer, taken)

    def _write_step_losses(self) -> None:
        # In one go, at the end of an execution: each write hands over to TensorBoard's writer thread,
        # which costs the training loop several times the write itself when it comes between steps.
        if not self._losses_to_write:
            return
        written, self._losses_to_write = self._losses_to_write, []
        values = torch.stack([loss for _, loss in written]).tolist()  # one read from the device
        for (step, _), value in zip(written, values):
            for logger in self.trainer.loggers:
                logger.log_metrics({"train/loss_step": value}, step=step)

    def _optimizer_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        # What manual_backward and LightningOptimizer.step do where no hook but the task's own is overridden.
        optimizer.zero_grad()
        loss.backward()
        self.on_before_optimizer_step(optimizer)
        optimizer.step()
        count_optimizer_step(self.trainer)

    @override
    def on_train_start(self) -> None:
        if not self.automatic_optimization:
            self._steps_need_lightning = steps_need_lightning(self.trainer, self, SeqBatchTask)
            self._batches_need_lightning = batches_need_lightning(self.trainer, self, (SplitsDataModule,))

    @override
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Under manual optimization Lightning clips nothing; here the gradients are already unscaled.
        if not self.automatic_optimization:
            self.configure_gradient_clipping(optimizer)

    @override
    def validation_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    @override
    def test_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    @override
    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.parameters())
        self._check_fused_can_clip(optimizer)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = {"scheduler": self.scheduler_factory(optimizer=optimizer)}
        if self.automatic_optimization:  # else the task steps it, each epoch (see _step_epoch_schedulers)
            scheduler.update(monitor=self.hparams.monitor, interval="epoch")
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    @override
    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # trainer.gradient_clip_val wins over the task's own model.gradient_clip, where it has one. Lightning
        # calls this every step, and its checks cost ~50 us even when there is nothing to clip.
        value = gradient_clip_val if gradient_clip_val is not None else self.hparams.get("gradient_clip")
        if value:
            algorithm = gradient_clip_algorithm or "norm"
            self.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm=algorithm)

    def _check_fused_can_clip(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning's mixed precision refuses to clip for optimizers that unscale inside their step.
        clips = {
            "trainer.gradient_clip_val": self.trainer.gradient_clip_val,
            "model.gradient_clip": self.hparams.get("gradient_clip"),
        }
        clip_key = next((key for key, value in clips.items() if value), None)
        precision = str(self.trainer.precision)
        if optimizer.defaults.get("fused") and clip_key and "mixed" in precision:
            raise ValueError(
                f"model.optimizer.fused=true cannot clip gradients ({clip_key}={clips[clip_key]}) under "
                f"trainer.precision={precision}: set model.optimizer.fused=false"
            )
