"""Throughput of the lab's training path against a minimal hand-written PyTorch loop.

Four paths train the same net (RepeatVectorAutoencoder: hidden 100, relu LSTM) on the same seeded
data (1000 examples, 5 seeds, 5 steps, batch 32) in this one process:

- bare loop: a hand-written loop with ``torch.optim.Adam(lr=1e-3)``, as a user writes it, that
  trains and computes the validation MSE once per epoch;
- bare loop, lab's optimizer: the same loop with the optimizer of the lab's model config (fused
  Adam): the like-for-like baseline, so that what remains is what the lab's machinery costs;
- lightning floor: the bare loop's work as a minimal LightningModule under a ``Trainer`` with every
  extra (logger, checkpoints, callbacks, progress bar, sanity check) off: Lightning's loop alone;
- lab: the default ``src.train`` config (validation, checkpoints, TensorBoard logging, figures and
  progress bar on).

On a shared machine the speed drifts by tens of per cent over minutes, so paths timed one after the
other are timed on different machines. Here the paths run in lockstep, one epoch at a time: the lab's
epoch 0, then each bare loop's epoch 0 (in threads that wait for their turn, so only one runs at a
time), then the lab's epoch 1, and so on; the floor runs in lockstep with a bare loop of its own. A
Lightning epoch is timed from its start to the next one's (the last to the end of fit), so it holds
its training, validation, figures and checkpoint writes. Each repeat gives paired ratios; the median
over repeats is reported, with each repeat's line above it.

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
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

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
USER_ADAM: Optimizer = partial(torch.optim.Adam, lr=1e-3)  # what a hand-written loop uses; the floor too


class Lockstep:
    """Lets ``n`` training loops run their epochs in turn: 0's first epoch, 1's, ..., 0's second, ...

    A loop calls ``begin(i)`` before an epoch (it waits for its turn) and ``end(i)`` after it; the
    time between is the epoch's, in ``times[i]``.
    """

    def __init__(self, n: int) -> None:
        self.times: list[list[float]] = [[] for _ in range(n)]
        self._n, self._turn, self._closed = n, 0, False
        self._started = [0.0] * n
        self._changed = threading.Condition()

    def begin(self, i: int) -> bool:
        """Waits for loop ``i``'s turn; False once the lockstep is closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._turn == i or self._closed)
        self._started[i] = time.perf_counter()
        return not self._closed

    def end(self, i: int) -> None:
        self.times[i].append(time.perf_counter() - self._started[i])
        with self._changed:
            self._turn = (i + 1) % self._n
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class EpochClock(pl.Callback):
    """Loop 0 of the current lockstep: a Lightning fit, whose epoch runs from its start to the next one's."""

    lockstep: Lockstep | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:
            EpochClock.lockstep.end(0)
        EpochClock.lockstep.begin(0)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        EpochClock.lockstep.end(0)


def bare_epochs(optimizer_factory: Optimizer = USER_ADAM, batch_size: int = 32, seed: int = 12345) -> Iterator[float]:
    """A plain loop, built now; each ``next`` trains an epoch and returns the validation MSE."""
    torch.manual_seed(seed)
    data = SeededDataModule(batch_size=batch_size)
    data.setup()
    train_split, val_split = data.splits["train"], data.splits["val"]
    net = RepeatVectorAutoencoder(n_features=1, target_length=5)
    optimizer = optimizer_factory(net.parameters())
    order = torch.Generator().manual_seed(seed)  # not the global generator, which the lab's thread uses

    def epochs() -> Iterator[float]:
        while True:
            net.train()
            for idx in torch.randperm(train_split.size, generator=order).split(batch_size):
                batch = train_split.index(idx)
                loss = F.mse_loss(net(batch.src, batch.src_lengths, batch.tgt), batch.tgt)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            net.eval()
            with torch.no_grad():
                yield F.mse_loss(net(val_split.src, val_split.src_lengths, val_split.tgt), val_split.tgt).item()

    return epochs()


def in_lockstep(fit: Callable[[], None], bare_optimizers: list[Optimizer], epochs: int) -> list[list[float]]:
    """Each epoch's seconds: of ``fit`` (a Lightning fit with an ``EpochClock``), then of one bare
    loop per optimizer, all in lockstep."""
    lockstep = Lockstep(1 + len(bare_optimizers))
    loops = [bare_epochs(factory) for factory in bare_optimizers]  # built in this thread: no race on the seed

    def drive(i: int, loop: Iterator[float]) -> None:
        for _ in range(epochs):
            if not lockstep.begin(i):
                return
            val_mse = next(loop)
            lockstep.end(i)
        print(f"bare loop {i}: final val mse {val_mse:.2e}")

    threads = [threading.Thread(target=drive, args=(i + 1, loop), daemon=True) for i, loop in enumerate(loops)]
    EpochClock.lockstep = lockstep
    for thread in threads:
        thread.start()
    try:
        fit()
    except BaseException:
        lockstep.close()
        raise
    for thread in threads:
        thread.join()
    return lockstep.times


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


def lightning_floor(epochs: int, batch_size: int = 32, seed: int = 12345) -> None:
    """``trainer.fit`` of ``FloorModule`` with every Trainer extra turned off."""
    torch.manual_seed(seed)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[EpochClock()],
    )
    trainer.fit(FloorModule(), datamodule=SeededDataModule(batch_size=batch_size))


def lab_optimizer() -> Optimizer:
    """The optimizer factory of the lab's default config for this model."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return instantiate(compose(config_name="train", overrides=OVERRIDES).model.optimizer)


def lab(epochs: int, batch_size: int = 32) -> None:
    """``trainer.fit`` through ``src.train`` with the default config."""
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        sizes = [f"data.batch_size={batch_size}", f"trainer.max_epochs={epochs}"]
        paths = [f"paths.output_dir={out}", f"paths.log_dir={out}"]
        clock = [f"+callbacks.epoch_clock._target_={MODULE}.EpochClock"]
        metrics = train(compose(config_name="train", overrides=[*OVERRIDES, *sizes, *paths, *clock]))
    print(f"lab: final val mse {metrics['val/mse']:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="lockstep runs; the median ratio is reported")
    args = parser.parse_args()
    sys.modules.setdefault(MODULE, sys.modules[__name__])  # run as a script: one EpochClock, not a second import
    like_for_like = "bare loop, lab's optimizer"
    ms = {name: [] for name in ("bare loop", like_for_like, "lightning floor", "lab")}
    ratios: dict[str, list[float]] = {"lightning floor ratio": [], "like-for-like ratio": [], "ratio": []}
    bare_optimizers = [USER_ADAM, lab_optimizer()]
    for repeat in range(args.repeats):
        gc.collect()
        lab_times, bare_times, fused_times = in_lockstep(partial(lab, args.epochs), bare_optimizers, args.epochs)
        gc.collect()
        floor_times, floor_bare_times = in_lockstep(partial(lightning_floor, args.epochs), [USER_ADAM], args.epochs)
        for name, times in zip(ms, (bare_times, fused_times, floor_times, lab_times)):
            ms[name].append(1000 * sum(times) / args.epochs)
        ratios["lightning floor ratio"].append(sum(floor_bare_times) / sum(floor_times))
        ratios["like-for-like ratio"].append(sum(fused_times) / sum(lab_times))
        ratios["ratio"].append(sum(bare_times) / sum(lab_times))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{name} {values[-1]:.3f}" for name, values in ratios.items()))
    for name, values in ms.items():
        runs = f"runs {min(values):.1f}-{max(values):.1f}"
        print(f"{name + ':':28s}{statistics.median(values):7.1f} ms/epoch (median; {runs})")
    for name, values in ratios.items():
        print(f"{name}: {statistics.median(values):.3f}")


if __name__ == "__main__":
    main()
