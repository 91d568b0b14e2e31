"""Throughput of the lab's training path against a minimal hand-written PyTorch loop.

Four paths train the same net (RepeatVectorAutoencoder: hidden 100, relu LSTM) on the same seeded
data (1000 examples, 5 seeds, 5 steps, batch 32) in this one process, alternating:

- bare loop: a hand-written loop with ``torch.optim.Adam(lr=1e-3)``, as a user writes it, that
  trains and computes the validation MSE once per epoch;
- bare loop, lab's optimizer: the same loop with the optimizer of the lab's model config (fused
  Adam): the like-for-like baseline, so that what remains is what the lab's machinery costs;
- lightning floor: the bare loop's work as a minimal LightningModule under a ``Trainer`` with every
  extra (logger, checkpoints, callbacks, progress bar, sanity check) off: Lightning's loop alone;
- lab: the default ``src.train`` config (validation, checkpoints, TensorBoard logging, figures and
  progress bar on).

Each epoch is timed, from its start to the next one's (the last: to the end of fit), so that it holds
the epoch's training, validation, figures and checkpoint saves. A path's time is the sum over epochs
of each epoch's best over ``--repeats`` runs: on a shared machine whose speed drifts by tens of per
cent within a run, that keeps what every run pays (a figure at epoch 20 is drawn at epoch 20 in every
run) and drops what only a disturbed run pays. The best whole run and the median run are printed
beside it. Each repeat starts from the next path, and garbage is collected before each path.

    python scripts/bench_train.py [--epochs 100] [--repeats 3]

The last line is ``ratio: <lab throughput / bare-loop throughput>``; the two lines before it are the
floor's and the like-for-like ratio.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from src.data.seeded import SeededDataModule
from src.models.nets import RepeatVectorAutoencoder
from src.train import train

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
# The name under which Hydra's _target_ finds EpochClock; run as a script, main() registers it.
MODULE = "bench_train" if __name__ == "__main__" else __name__
OVERRIDES = ["model=repeat_vector", "data=seeded", "test=false"]
Optimizer = Callable[..., torch.optim.Optimizer]
EpochTimes = list[float]  # seconds, one per epoch
USER_ADAM: Optimizer = partial(torch.optim.Adam, lr=1e-3)  # what a hand-written loop uses; the floor too


def bare_loop(
    epochs: int,
    optimizer_factory: Optimizer = USER_ADAM,
    batch_size: int = 32,
    seed: int = 12345,
) -> EpochTimes:
    """Each epoch's seconds with a plain loop that trains and computes a validation MSE per epoch."""
    torch.manual_seed(seed)
    data = SeededDataModule(batch_size=batch_size)
    data.setup()
    train_split, val_split = data.splits["train"], data.splits["val"]
    net = RepeatVectorAutoencoder(n_features=1, target_length=5)
    optimizer = optimizer_factory(net.parameters())
    marks = [time.perf_counter()]
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(train_split.size).split(batch_size):
            batch = train_split.index(idx)
            loss = F.mse_loss(net(batch.src, batch.src_lengths, batch.tgt), batch.tgt)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            val_mse = F.mse_loss(net(val_split.src, val_split.src_lengths, val_split.tgt), val_split.tgt)
        marks.append(time.perf_counter())
    print(f"bare loop: final val mse {val_mse.item():.2e}")
    return [end - start for start, end in zip(marks, marks[1:])]


class EpochClock(pl.Callback):
    """Times each epoch of a fit, from its start to the next one's, the last one to the end of fit."""

    marks: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        EpochClock.marks.append(time.perf_counter())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        EpochClock.marks.append(time.perf_counter())

    @staticmethod
    def take() -> EpochTimes:
        marks, EpochClock.marks = EpochClock.marks, []
        return [end - start for start, end in zip(marks, marks[1:])]


class FloorModule(pl.LightningModule):
    """The bare loop's work, as Lightning runs it: MSE steps and a validation MSE, nothing logged."""

    def __init__(self) -> None:
        super().__init__()
        self.net = RepeatVectorAutoencoder(n_features=1, target_length=5)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return F.mse_loss(self.net(batch.src, batch.src_lengths, batch.tgt), batch.tgt)

    def validation_step(self, batch, batch_idx: int) -> None:
        F.mse_loss(self.net(batch.src, batch.src_lengths, batch.tgt), batch.tgt)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch.to(device)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return USER_ADAM(self.parameters())


def lightning_floor(epochs: int, batch_size: int = 32, seed: int = 12345) -> EpochTimes:
    """Each epoch's seconds in ``trainer.fit`` of ``FloorModule`` with every Trainer extra turned off."""
    torch.manual_seed(seed)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[EpochClock()],
    )
    trainer.fit(FloorModule(), datamodule=SeededDataModule(batch_size=batch_size))
    return EpochClock.take()


def lab_optimizer() -> Optimizer:
    """The optimizer factory of the lab's default config for this model."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return instantiate(compose(config_name="train", overrides=OVERRIDES).model.optimizer)


def lab(epochs: int, batch_size: int = 32) -> EpochTimes:
    """Each epoch's seconds in ``trainer.fit`` through ``src.train`` with the default config."""
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        sizes = [f"data.batch_size={batch_size}", f"trainer.max_epochs={epochs}"]
        paths = [f"paths.output_dir={out}", f"paths.log_dir={out}"]
        clock = [f"+callbacks.epoch_clock._target_={MODULE}.EpochClock"]
        metrics = train(compose(config_name="train", overrides=[*OVERRIDES, *sizes, *paths, *clock]))
    print(f"lab: final val mse {metrics['val/mse']:.2e}")
    return EpochClock.take()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="alternate the paths; report each one's best")
    args = parser.parse_args()
    sys.modules.setdefault(MODULE, sys.modules[__name__])  # run as a script: one EpochClock, not a second import
    lab_optimizer_factory = lab_optimizer()
    like_for_like = "bare loop, lab's optimizer"
    paths = {
        "bare loop": bare_loop,
        like_for_like: lambda epochs: bare_loop(epochs, lab_optimizer_factory),
        "lightning floor": lightning_floor,
        "lab": lab,
    }
    runs: dict[str, list[EpochTimes]] = {name: [] for name in paths}
    for repeat in range(args.repeats):
        names = list(paths)
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:  # no path always runs last
            gc.collect()  # none pays for the previous path's garbage
            runs[name].append(paths[name](args.epochs))
    per_epoch = {name: 1000 * sum(map(min, zip(*r))) / args.epochs for name, r in runs.items()}
    for name, r in runs.items():
        totals = [1000 * sum(run) / args.epochs for run in r]
        print(
            f"{name + ':':28s}{per_epoch[name]:7.1f} ms/epoch"
            f" (best run {min(totals):.1f}, median run {statistics.median(totals):.1f})"
        )
    print(f"lightning floor ratio: {per_epoch['bare loop'] / per_epoch['lightning floor']:.3f}")
    print(f"like-for-like ratio: {per_epoch[like_for_like] / per_epoch['lab']:.3f}")
    print(f"ratio: {per_epoch['bare loop'] / per_epoch['lab']:.3f}")


if __name__ == "__main__":
    main()
