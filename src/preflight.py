"""What a run checks before anything is built: the config values a user can type, the pairing of
model and data, and the checkpoint it starts from. Each failure is one line naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from src.checks import ConfigError, check_arguments, check_choice, check_declares, check_number, load_checkpoint
from src.models.tasks.base import SeqBatchTask
from src.models.tasks.contract import SeqBatchData

# Lightning's bounds, where Lightning would fail late or with a message that does not name the key.
TRAINER_COUNTS = {  # key -> lowest valid value; null passes (Lightning's default)
    "min_epochs": 0,
    "max_steps": -1,
    "check_val_every_n_epoch": 1,
    "log_every_n_steps": 1,
    "num_sanity_val_steps": -1,
    "accumulate_grad_batches": 1,
}
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
# What to suggest for each kind of batch (see SequenceDataModule.batch_kind, SeqBatchTask.batch_kind).
EXAMPLES = {"tokens": ("data=increment", "model=seq2seq"), "real": ("data=seeded", "model=repeat_vector")}


def choice(cfg: DictConfig, group: str) -> str:
    """``model=seq2seq`` as typed, where Hydra knows it; else the group's ``_target_``."""
    if HydraConfig.initialized():
        chosen = HydraConfig.get().runtime.choices.get(group)
        if chosen:
            return f"{group}={chosen}"
    return f"{group}._target_={cfg[group].get('_target_')}"


def check_config(cfg: DictConfig) -> dict[str, Any] | None:
    """Every value of a train config, before anything is built; the loaded ``ckpt_path`` checkpoint."""
    check_number("seed", cfg.seed, 0, 2**32 - 1, integer=True)
    for key in ("train", "test"):
        if not isinstance(cfg.get(key), bool):
            raise ConfigError(f"{key}={cfg.get(key)!r} must be true or false")
    check_arguments(cfg.data, "data")
    check_batch_kinds(cfg)
    check_arguments(cfg.model, "model")
    check_trainer(cfg.trainer)
    check_steps_per_execution(cfg)
    for group in ("callbacks", "logger"):
        for name, node in (cfg.get(group) or {}).items():
            if isinstance(node, DictConfig):
                check_arguments(node, f"{group}.{name}")
    return resolve_checkpoint(cfg)


def check_batch_kinds(cfg: DictConfig) -> None:
    """A token model on real-valued data, or the reverse, fails here, before the model's config
    reads a size (``${data.vocab_size}``) the data does not have."""
    data_class, task_class = hydra.utils.get_class(cfg.data._target_), hydra.utils.get_class(cfg.model._target_)
    check_declares("data", data_class, SeqBatchData)
    if not issubclass(task_class, SeqBatchTask):
        raise ConfigError(f"model._target_={cfg.model._target_} is not a task of the lab (a SeqBatchTask)")
    data_kind, model_kind = data_class.batch_kind, task_class.batch_kind
    if data_kind != model_kind:
        words = {"tokens": "token", "real": "real-valued"}
        raise ConfigError(
            f"{choice(cfg, 'model')} trains on {words[model_kind]} sequences but {choice(cfg, 'data')} makes "
            f"{words[data_kind]} sequences: use a {words[model_kind]} dataset (e.g. {EXAMPLES[model_kind][0]}) "
            f"or a {words[data_kind]} model (e.g. {EXAMPLES[data_kind][1]})"
        )


def check_trainer(trainer: DictConfig) -> None:
    """Ranges of the trainer keys a user types most (their types are checked against Trainer's signature)."""
    check_arguments(trainer, "trainer")
    max_epochs = trainer.get("max_epochs")
    if max_epochs not in (None, -1) and not (isinstance(max_epochs, int) and max_epochs >= 1):
        raise ConfigError(f"trainer.max_epochs={max_epochs!r} must be an integer >= 1, or -1 for no limit")
    for key, low in TRAINER_COUNTS.items():
        if trainer.get(key) is not None:
            check_number(f"trainer.{key}", trainer[key], low, integer=True)
    if (
        trainer.get("min_epochs")
        and trainer.get("max_epochs") not in (None, -1)
        and trainer.min_epochs > trainer.max_epochs
    ):
        raise ConfigError(f"trainer.min_epochs={trainer.min_epochs} must be <= trainer.max_epochs={trainer.max_epochs}")
    if trainer.get("gradient_clip_val") is not None:
        check_number("trainer.gradient_clip_val", trainer.gradient_clip_val, 0)
    for split in ("train", "val", "test"):
        limit = trainer.get(f"limit_{split}_batches")
        if isinstance(limit, float):
            check_number(f"trainer.limit_{split}_batches", limit, 0, 1)
        elif limit is not None:
            check_number(f"trainer.limit_{split}_batches", limit, 0, integer=True)
    accelerator = trainer.get("accelerator")
    if isinstance(accelerator, str):
        check_choice("trainer.accelerator", accelerator, ACCELERATORS)
        if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accelerator} but torch sees no CUDA GPU here: use trainer=cpu")
    devices = trainer.get("devices")
    if isinstance(devices, int) and devices != -1:
        check_number("trainer.devices", devices, 1, integer=True)
    elif isinstance(devices, str) and devices != "auto" and not devices.replace(",", "").strip().isdigit():
        raise ConfigError(f"trainer.devices={devices!r} must be a count, -1 (all), 'auto' or a list of device ids")


def check_steps_per_execution(cfg: DictConfig) -> None:
    """The trainer keys that only Lightning's automatic optimization serves need one step per execution."""
    steps = check_number("model.steps_per_execution", cfg.model.get("steps_per_execution", 1), 1, integer=True)
    if steps == 1:
        return
    for key, default, instead in (
        ("gradient_clip_val", None, "set model.gradient_clip"),
        ("accumulate_grad_batches", 1, "raise data.batch_size"),
    ):
        value = cfg.trainer.get(key, default)
        if value not in (default, 0):
            raise ConfigError(
                f"trainer.{key}={value} needs model.steps_per_execution=1 (it is {steps}): Lightning applies it "
                f"only to one optimizer step per training step; {instead} instead"
            )


def resolve_checkpoint(cfg: DictConfig) -> dict[str, Any] | None:
    """The checkpoint ``ckpt_path`` names, loaded; ``ckpt_path=last`` becomes the newest ``last.ckpt``
    of this task's earlier runs."""
    path = cfg.get("ckpt_path")
    if not path:
        return None
    if path == "last":
        path = newest_last_checkpoint(Path(cfg.paths.log_dir) / cfg.task_name, Path(cfg.paths.output_dir))
        with open_dict(cfg):
            cfg.ckpt_path = str(path)
    checkpoint = load_checkpoint("ckpt_path", path)
    max_epochs = cfg.trainer.get("max_epochs")
    epoch = int(checkpoint.get("epoch", 0))
    if cfg.train and max_epochs not in (None, -1) and epoch >= max_epochs:
        raise ConfigError(
            f"ckpt_path={path} is at epoch {epoch}, so trainer.max_epochs={max_epochs} leaves nothing to train: "
            f"raise trainer.max_epochs"
        )
    return checkpoint


def newest_last_checkpoint(task_dir: Path, output_dir: Path) -> Path:
    """The most recently written ``last.ckpt`` under ``task_dir`` (runs and multiruns), not this run's."""
    found = [p for p in task_dir.glob("**/checkpoints/last.ckpt") if output_dir.resolve() not in p.resolve().parents]
    if not found:
        raise ConfigError(f"ckpt_path=last but no earlier run under {task_dir} has a checkpoints/last.ckpt")
    return max(found, key=lambda p: p.stat().st_mtime)


def check_checkpoint_fits(checkpoint: dict[str, Any], model: nn.Module, path: str) -> None:
    """The checkpoint's weights must be the model's: same names, same shapes."""
    expected = model.state_dict()
    found = checkpoint["state_dict"]
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    resized = [k for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k].shape)]
    if not (missing or extra or resized):
        return
    if resized:
        key = resized[0]
        detail = f"{key} is {tuple(found[key].shape)} there, {tuple(expected[key].shape)} here"
    else:
        detail = f"{len(missing)} weights missing (e.g. {missing[0]})" if missing else f"unknown weight {extra[0]}"
    raise ConfigError(f"ckpt_path={path} holds another model{trained_with(Path(path))}: {detail}")


def trained_with(path: Path) -> str:
    """`` (trained with model=x, data=y)`` from the checkpoint's own run dir, where it has one."""
    hydra_file = path.resolve().parent.parent / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return ""
    choices = OmegaConf.load(hydra_file).hydra.runtime.choices
    return f" (trained with model={choices.get('model')}, data={choices.get('data')})"


def check_targets(cfg: DictConfig, datamodule: Any) -> None:
    """A model that can only rebuild its input must not be handed a forecasting or continuation target."""
    task = hydra.utils.get_class(cfg.model._target_)
    if task.reconstruction_only and not datamodule.reconstructs:
        raise ConfigError(
            f"model._target_={task.__name__} ({choice(cfg, 'model')}) only reconstructs its input, but "
            f"{choice(cfg, 'data')} asks for a target "
            f"that follows the input (it starts at step {datamodule.tgt_offset}): use a reconstruction dataset "
            f"(e.g. data=sine with data.mode=reconstruct)"
        )
