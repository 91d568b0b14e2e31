"""The private Lightning names the lab relies on (src/lightning_internals.py) are still there, and an
optimizer step still calls the hooks the lab's direct step stands in for."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.core.hooks import DataHooks
from pytorch_lightning.trainer.connectors.logger_connector import result

from src.data.seeded import SeededDataModule
from src.lightning_internals import (
    BATCH_TRANSFER_HOOKS,
    CHECKPOINT_HOOKS,
    OPTIMIZER_STEP_HOOKS,
    RELIED_ON,
    remember_result_moves,
)
from src.train import train
from tests.conftest import QUIET, compose_config

ADVICE = "adapt src/lightning_internals.py to it, or keep pytorch-lightning below this version in pyproject.toml"


def owner(where: str) -> object:
    if where == "LightningModule":
        return pl.LightningModule()
    if where == "ModelCheckpoint":
        return ModelCheckpoint()
    if where == "Trainer":
        return pl.Trainer(
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
        )
    return importlib.import_module(where)


@pytest.mark.parametrize("where,name", RELIED_ON, ids=[f"{w}.{n}" for w, n in RELIED_ON])
def test_private_lightning_names_the_lab_relies_on_still_exist(where: str, name: str) -> None:
    found = owner(where)
    for part in name.split("."):
        if not hasattr(found, part):
            pytest.fail(f"pytorch-lightning {pl.__version__} has no {where}.{name} any more: {ADVICE}")
        found = getattr(found, part)


@pytest.mark.parametrize("name", CHECKPOINT_HOOKS)
def test_overridden_checkpoint_hooks_keep_their_parameters(name: str) -> None:
    parameters = tuple(inspect.signature(getattr(ModelCheckpoint, name)).parameters)
    assert parameters == CHECKPOINT_HOOKS[name], (
        f"pytorch-lightning {pl.__version__} changed ModelCheckpoint.{name}{parameters}, which "
        f"LastAndBestCheckpoint overrides or calls as {CHECKPOINT_HOOKS[name]}: {ADVICE}"
    )


# Around a training step: Lightning's own hooks, and the batch transfer that training_steps asks for.
BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_batch_transfer", "on_after_batch_transfer")


class HookRecorder(pl.Callback):
    """Records, by name, every callback and module hook Lightning calls while a training step runs
    (between the callbacks' on_train_batch_start and on_train_batch_end). Every hook is overridden,
    so the steps go through Lightning's dispatch."""

    inside_step: list[str] = []
    in_batch = False

    @staticmethod
    def recording(name: str, hook: Callable[..., Any]) -> Callable[..., Any]:
        def record(*args: Any, **kwargs: Any) -> Any:
            if HookRecorder.in_batch:
                HookRecorder.inside_step.append(name)
            return hook(*args, **kwargs)

        return record

    def on_train_batch_start(self, *args: Any) -> None:
        HookRecorder.in_batch = True

    def on_train_batch_end(self, *args: Any) -> None:
        HookRecorder.in_batch = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        hooks = [
            n
            for n in dir(pl.LightningModule)
            if n.startswith("on_") and inspect.isfunction(getattr(pl.LightningModule, n))
        ]
        for name in [*(n for n in hooks if n not in BATCH_HOOKS), "backward"]:
            object.__setattr__(pl_module, name, self.recording(f"module.{name}", getattr(pl_module, name)))


for _name in dir(pl.Callback):
    if _name.startswith("on_") and _name not in (*BATCH_HOOKS, "on_train_start"):
        setattr(HookRecorder, _name, HookRecorder.recording(_name, getattr(pl.Callback, _name)))


def test_an_optimizer_step_calls_only_the_hooks_the_direct_step_stands_in_for(tmp_path: Path) -> None:
    # steps_need_lightning lets a step skip manual_backward and LightningOptimizer.step where none of
    # OPTIMIZER_STEP_HOOKS is overridden: that holds only while these are all the hooks they call.
    HookRecorder.inside_step = []
    overrides = ["model=flux_rnn", "data=seeded", "data.n_train=64", "data.batch_size=16", "trainer.max_epochs=1"]
    recorder = f"+callbacks.recorder._target_={__name__}.HookRecorder"
    train(
        compose_config("train", [*QUIET, "test=false", "model.steps_per_execution=4", recorder, *overrides], tmp_path)
    )
    step_hooks = [*OPTIMIZER_STEP_HOOKS, "module.backward"] + [f"module.{hook}" for hook in OPTIMIZER_STEP_HOOKS]
    called = sorted(set(HookRecorder.inside_step))
    assert called == sorted(step_hooks), (
        f"pytorch-lightning {pl.__version__} calls {called} in a manual optimizer step, not "
        f"{sorted(step_hooks)}: {ADVICE}"
    )
    assert len(HookRecorder.inside_step) == 4 * len(step_hooks)  # each once in each of the 4 optimizer steps


def recording_every_data_hook(base: type) -> type:
    """``base`` with every hook of Lightning's ``DataHooks`` overridden to count its calls during training."""

    def recorder(name: str) -> Callable[..., Any]:
        def hook(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.trainer is not None and self.trainer.training:
                DataHookRecorder.calls[name] = DataHookRecorder.calls.get(name, 0) + 1
            return getattr(super(DataHookRecorder, self), name)(*args, **kwargs)

        return hook

    hooks = [n for n in dir(DataHooks) if not n.startswith("_") and inspect.isfunction(getattr(DataHooks, n))]
    return type("DataHookRecorder", (base,), {"calls": {}, **{name: recorder(name) for name in hooks}})


DataHookRecorder = recording_every_data_hook(SeededDataModule)


def test_a_batch_goes_to_the_device_through_only_the_hooks_the_direct_transfer_stands_in_for(tmp_path: Path) -> None:
    # batches_need_lightning lets an execution move a batch itself where none of BATCH_TRANSFER_HOOKS is
    # overridden: that holds only while these are all the data hooks Lightning calls on each batch.
    DataHookRecorder.calls = {}
    # One optimizer step per Lightning step: Lightning's own transfer, 10 training batches.
    overrides = ["model=flux_rnn", "model.steps_per_execution=1", "data.n_train=160", "data.batch_size=16"]
    recorder = f"data._target_={__name__}.DataHookRecorder"
    train(compose_config("train", [*QUIET, "test=false", "trainer.max_epochs=1", recorder, *overrides], tmp_path))
    per_batch = sorted(name for name, count in DataHookRecorder.calls.items() if count == 10)
    assert per_batch == sorted(BATCH_TRANSFER_HOOKS), (
        f"pytorch-lightning {pl.__version__} calls {per_batch} on each training batch, not "
        f"{sorted(BATCH_TRANSFER_HOOKS)}: {ADVICE}"
    )


def tensors_of(record: result._ResultMetric) -> list[torch.Tensor]:
    """The tensors a logged value's record holds: in its instance dict, and in the dicts there."""
    found = []
    for value in record.__dict__.values():
        for item in value.values() if isinstance(value, dict) else [value]:
            if isinstance(item, torch.Tensor):
                found.append(item)
    return found


def test_a_logged_values_record_moves_to_a_device_once_and_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    remember_result_moves()
    remember_result_moves()  # installed once, however often a task is built
    assert result._ResultMetric.to.remembers_device
    moved = []
    move = result.move_data_to_device
    monkeypatch.setattr(result, "move_data_to_device", lambda data, *a, **k: moved.append(data) or move(data, *a, **k))
    results = result._ResultCollection(training=True)
    results.log("training_step", "loss", torch.tensor(2.0), batch_size=4)
    first_log = len(moved)
    assert first_log, f"pytorch-lightning {pl.__version__} no longer moves a record in self.log: {ADVICE}"
    for _ in range(3):
        results.log("training_step", "loss", torch.tensor(2.0), batch_size=4)
    assert len(moved) == first_log  # already on the CPU: no walk
    record = results["training_step.loss"]
    assert record.value == 8.0 * 4 and record.cumulated_batch_size == 16
    record.to(torch.device("meta"))  # elsewhere: moved, every tensor of it
    assert len(moved) > first_log
    devices = {tensor.device.type for tensor in tensors_of(record)}
    assert devices == {"meta"}, f"pytorch-lightning {pl.__version__} left part of a record behind: {ADVICE}"
