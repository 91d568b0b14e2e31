"""Throughput of the lab's training path against a hand-written PyTorch loop, for every model preset.

Each model preset trains on its natural dataset (the real-valued models on ``seeded`` and ``sine``,
the token seq2seq presets on ``increment``, ``encdec_ad`` on ``anomaly``) two ways, the same number
of optimizer steps each:

- lab: ``src.train`` with the default config (validation, checkpoints, TensorBoard, LR monitor,
  figures, diagnosis and progress bar on; ``test=false``);
- bare loop: a hand-written PyTorch loop over the same net (built from the same config and seed),
  the same batches (the datamodule's loaders) and the same optimizer, scheduler, gradient clipping
  and teacher forcing, with a validation pass per epoch: the loss, for token models the greedy
  decode that exact match scores, and for the anomaly task's detection monitor
  (``val/threshold_auprc``, data=anomaly's default) the task's own scoring of the threshold split.

A shared machine's speed drifts by tens of per cent over minutes, so the paths run in lockstep, one
epoch at a time, each in its own process (so that each has its own peak RSS): the lab's epoch 0, then
the bare loop's epoch 0 (then the floor's, below), then the lab's epoch 1, and so on; only one runs at
a time. A lab epoch is timed from its start to the next one's (the last to the end of fit), so it holds
its training, validation, figures and checkpoint writes; set-up before the first epoch is not timed in
any path.
The lab keeps its default ``trainer.max_epochs`` and is stopped by ``trainer.max_steps`` after the
bench's steps, so that its per-epoch work (a figure every ``every_n_epochs`` epochs, the last epoch's
figure) follows a default run's schedule rather than a run of a few epochs, whose first and last epochs
both draw one.

    python scripts/bench.py [--steps 100] [--repeats 1] [--floor] [--presets repeat_vector/seeded ...]
    python scripts/bench.py --compile [--presets ...]

``--floor`` adds a third path to the lockstep: the bare loop's steps and validation inside a plain
Lightning fit (``BareLoopInLightning``: no logger, callback, checkpoint or bar), and two columns, its
steps/s and its ratio to the bare loop. That ratio is what Lightning's loops alone cost; the lab's
ratio below it is what the lab's task and default features add.

``--compile`` prints instead, for each preset, the bare loop's seconds per step with the net eager
and under ``nn.Module.compile`` (what ``model.compile=true`` does), the compile time, and whether
compiling wins over the training steps of a default run (``trainer.max_epochs`` epochs), compiling
with an empty cache (a warm one, from an earlier run of the same net, compiles faster).

``--steps`` is rounded up to whole epochs of each dataset (every path validates once per epoch).
Prints one markdown table (medians over ``--repeats``, and the smallest and largest ratio of the
repeats); the last line is ``min ratio: <smallest median lab / bare-loop throughput>``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.models.tasks.anomaly_detection import DETECTION_MONITORS
from src.reporting import compose_train_config, markdown_table
from src.train import train

# The module name under which Hydra's _target_ finds EpochClock (main() registers it when run as a script).
MODULE = "bench" if __name__ == "__main__" else __name__
REAL_MODELS = (
    "repeat_vector",
    "stacked_lstm",
    "autoregressive_rnn",
    "autoregressive_rnn_large",
    "flux_rnn",
    "encdec_ad",
)
PRESETS = (
    *(f"{model}/{data}" for model in REAL_MODELS for data in ("seeded", "sine")),
    *(f"{model}/increment" for model in ("seq2seq", "seq2seq_lstm", "seq2seq_bilstm", "seq2seq_post")),
    "encdec_ad/anomaly",
)
CTX = mp.get_context("fork")  # the children inherit the imports: no second start-up per path


class Lockstep:
    """Lets ``n`` processes run their epochs in turn: 0's first epoch, 1's, ..., 0's second, ...

    A process calls ``begin(i)`` before an epoch (it waits for its turn) and ``end(i)`` after it;
    the time between is the epoch's, in ``times`` (kept in that process).
    """

    def __init__(self, n: int) -> None:
        self._n = n
        self._turn, self._closed = CTX.Value("i", 0, lock=False), CTX.Value("b", 0, lock=False)
        self._changed = CTX.Condition()
        self._started = 0.0
        self.times: list[float] = []

    def begin(self, i: int) -> bool:
        """Waits for process ``i``'s turn; False once the lockstep is closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._turn.value == i or self._closed.value)
        self._started = time.perf_counter()
        return not self._closed.value

    def end(self, i: int) -> None:
        self.times.append(time.perf_counter() - self._started)
        with self._changed:
            self._turn.value = (i + 1) % self._n
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed.value = 1
            self._changed.notify_all()


class EpochClock(pl.Callback):
    """Process ``index`` of the lockstep: a Lightning fit, whose epoch runs from its start to the next one's."""

    lockstep: Lockstep | None = None
    steps = 0  # optimizer steps of the fit, set when it ends

    def __init__(self, index: int = 0) -> None:
        self.index = index

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:
            EpochClock.lockstep.end(self.index)
        EpochClock.lockstep.begin(self.index)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        EpochClock.lockstep.end(self.index)
        EpochClock.steps = trainer.global_step


def preset_config(preset: str, out: str, max_steps: int = -1) -> DictConfig:
    """The lab's default config for ``model/data``, writing under ``out``, stopped after ``max_steps``."""
    model, data = preset.split("/")
    overrides = [
        f"model={model}",
        f"data={data}",
        "test=false",
        f"++trainer.max_steps={max_steps}",
        f"+callbacks.epoch_clock._target_={MODULE}.EpochClock",
    ]
    return compose_train_config(overrides, out)


def steps_per_epoch(cfg: DictConfig) -> int:
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    return len(datamodule.train_dataloader())


def lab_path(cfg: DictConfig, lockstep: Lockstep) -> int:
    """``src.train`` with the default config; returns the optimizer steps it took."""
    EpochClock.lockstep = lockstep
    train(cfg)
    return EpochClock.steps


def bare_parts(cfg: DictConfig) -> tuple[Any, torch.nn.Module, Any, Any, Callable, Callable]:
    """(datamodule, net, optimizer, scheduler, one training step, one validation step) as the bare loop
    builds them. The validation step returns the batch's loss summed over its examples and, for token
    models, how many the greedy decode gets exactly right (0 for real values)."""
    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    net = instantiate(cfg.model.net)
    optimizer = instantiate(cfg.model.optimizer)(params=net.parameters())
    scheduler = instantiate(cfg.model.scheduler)(optimizer=optimizer) if cfg.model.get("scheduler") else None
    clip = cfg.model.get("gradient_clip")
    teacher_forcing = float(cfg.model.get("teacher_forcing", 0.0))
    tokens = datamodule.batch_kind == "tokens"
    pad_id = int(cfg.data.get("pad_id", 0))
    regression_loss = F.l1_loss if cfg.model.get("loss") == "l1" else F.mse_loss

    def loss_of(batch, teacher: float) -> torch.Tensor:
        if tokens:
            logits = net(batch.src, batch.src_lengths, batch.tgt, teacher_forcing=teacher)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.tgt.reshape(-1), ignore_index=pad_id)
        pred = net(batch.src, batch.src_lengths, batch.tgt, teacher_forcing=teacher, tgt_lengths=batch.tgt_lengths)
        return regression_loss(pred, batch.tgt)

    def train_step(batch) -> None:
        loss = loss_of(batch, teacher_forcing)
        optimizer.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()

    def validation_step(batch) -> tuple[float, int]:
        loss_sum = loss_of(batch, 1.0 if tokens else 0.0).item() * batch.size
        if not tokens:
            return loss_sum, 0
        decoded = net.decode(batch.src, batch.src_lengths, batch.tgt.shape[1]).tokens
        return loss_sum, int((decoded == batch.tgt).all(-1).sum())

    return datamodule, net, optimizer, scheduler, train_step, validation_step


def detection_metric(cfg: DictConfig, datamodule: Any, net: torch.nn.Module) -> Callable[[], Any] | None:
    """What the anomaly task computes each epoch for a detection ``model.monitor`` (the threshold split's
    AUROC and AUPRC), on ``net``, by the task's own scoring code; None for any other monitor."""
    if cfg.model.get("monitor") not in DETECTION_MONITORS:
        return None
    task = instantiate(cfg.model, net=net)
    task.read_series_layout(datamodule)
    return lambda: task.threshold_split_detection(datamodule)


def bare_path(cfg: DictConfig, lockstep: Lockstep, epochs: int) -> int:
    """A hand-written loop over the lab's net, batches, optimizer, scheduler, clipping and teacher forcing."""
    datamodule, net, _, scheduler, train_step, validation_step = bare_parts(cfg)
    detection = detection_metric(cfg, datamodule, net)
    train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()
    steps = 0
    for _ in range(epochs):
        if not lockstep.begin(1):
            break
        net.train()
        for batch in train_loader:
            train_step(batch)
            steps += 1
        net.eval()
        with torch.no_grad():
            val_loss = 0.0
            for batch in val_loader:
                loss_sum, _ = validation_step(batch)  # the exact-match count: the work, not the score, is timed
                val_loss += loss_sum
            if detection is not None:
                detection()
        if scheduler is not None:
            scheduler.step(val_loss)
        lockstep.end(1)
    return steps


class BareLoopInLightning(pl.LightningModule):
    """The bare loop's epoch as a minimal Lightning module: its training steps, up to
    ``model.steps_per_execution`` of them per Lightning step (manual optimization, as the lab's task),
    and its validation pass, logging only ``val/loss``. Trained with no logger, callback, checkpoint
    or progress bar, it is what Lightning's fit and evaluation loops cost before the lab adds anything."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.data, self.net, self.optimizer, self.scheduler, self.train_step, self.validate = bare_parts(cfg)
        self.detection = detection_metric(cfg, self.data, self.net)
        self.steps_per_execution = int(cfg.model.get("steps_per_execution", 1))
        self.steps, self.val_loss = 0, 0.0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer

    def training_step(self, dataloader_iter: Any) -> None:
        for _ in range(self.steps_per_execution):
            batch, _, _ = next(dataloader_iter)
            self.train_step(batch)  # the bare loop's step, on its optimizer: Lightning's wrapper is not used
            self.steps += 1
            if dataloader_iter.done:
                break

    def on_validation_epoch_start(self) -> None:
        self.val_loss = 0.0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss_sum, _ = self.validate(batch)  # as the bare loop: the exact-match work, not its score
        self.val_loss += loss_sum
        self.log("val/loss", loss_sum / batch.size, batch_size=batch.size)

    def on_validation_epoch_end(self) -> None:
        if self.detection is not None:
            self.detection()

    def on_train_epoch_end(self) -> None:
        if self.scheduler is not None:
            self.scheduler.step(self.val_loss)


def floor_path(cfg: DictConfig, lockstep: Lockstep, epochs: int) -> int:
    """``BareLoopInLightning`` fitted by a plain Trainer on the CPU, for ``epochs`` epochs."""
    EpochClock.lockstep = lockstep
    module = BareLoopInLightning(cfg)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[EpochClock(2)],
    )
    trainer.fit(module, module.data.train_dataloader(), module.data.val_dataloader())  # the bare loop's loaders
    return module.steps


def compile_path(cfg: DictConfig, results: Any) -> None:
    """In a child process: seconds per step of the bare loop's net eager and under ``nn.Module.compile``
    (each the second of two epochs), and the compile time (the first compiled epoch's excess)."""
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)  # the compiler's warnings, too
    try:
        datamodule, net, _, _, train_step, _ = bare_parts(cfg)
        loader = datamodule.train_dataloader()

        def epoch() -> float:
            started = time.perf_counter()
            for batch in loader:
                train_step(batch)
            return time.perf_counter() - started

        epoch()
        eager = epoch()
        # A cache of its own: a user's first compiled run finds nothing compiled before it.
        with tempfile.TemporaryDirectory(prefix="bench_inductor_") as cache:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
            net.compile()
            first = epoch()
            compiled = epoch()
        results.put((eager / len(loader), compiled / len(loader), first - compiled, len(loader), None))
    except Exception as error:
        results.put((0.0, 0.0, 0.0, 0, f"{type(error).__name__}: {error}"))


def compile_gain(preset: str) -> dict[str, Any]:
    """Whether ``model.compile=true`` wins over a default run of ``preset``: its steps at the eager and
    compiled speeds, plus the compile time."""
    with tempfile.TemporaryDirectory() as out:
        model, data = preset.split("/")
        default = compose_train_config([f"model={model}", f"data={data}"], out)
        results = CTX.Queue()
        child = CTX.Process(target=compile_path, args=(preset_config(preset, out), results))
        child.start()
        eager, compiled, compile_s, per_epoch, error = results.get()
        child.join()
    if error:
        raise RuntimeError(f"{preset}, compiled: {error}")
    steps = per_epoch * default.trainer.max_epochs
    return {
        "eager_ms": eager * 1000,
        "compiled_ms": compiled * 1000,
        "compile_s": compile_s,
        "steps": steps,
        "eager_run_s": steps * eager,
        "compiled_run_s": steps * compiled + compile_s,
    }


def run_path(path: str, cfg: DictConfig, lockstep: Lockstep, epochs: int, results: Any) -> None:
    """In a child process: run one path (lab, bare or floor), send (times, steps, peak RSS in MiB) or the error."""
    quiet = os.open(os.devnull, os.O_WRONLY)  # the lab's reports would bury the table
    os.dup2(quiet, 1)
    try:
        if path == "lab":
            steps = lab_path(cfg, lockstep)
        else:
            steps = (bare_path if path == "bare" else floor_path)(cfg, lockstep, epochs)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.put((path, lockstep.times, steps, peak, None))
    except BaseException as error:  # the other path must not wait for a turn that never comes
        lockstep.close()
        results.put((path, [], 0, 0.0, f"{type(error).__name__}: {error}"))


def bench_preset(preset: str, min_steps: int, floor: bool = False) -> dict[str, Any]:
    """The paths of one preset in lockstep (lab, bare loop and, with ``floor``, the bare loop in Lightning);
    each one's steps/s and peak RSS."""
    paths = ("lab", "bare", "floor") if floor else ("lab", "bare")
    with tempfile.TemporaryDirectory() as out:
        per_epoch = steps_per_epoch(preset_config(preset, out))
        epochs = max(1, math.ceil(min_steps / per_epoch))
        cfg = preset_config(preset, out, max_steps=epochs * per_epoch)
        cfg.trainer.max_epochs = max(cfg.trainer.max_epochs, epochs)
        lockstep, results = Lockstep(len(paths)), CTX.Queue()
        children = [CTX.Process(target=run_path, args=(path, cfg, lockstep, epochs, results)) for path in paths]
        for child in children:
            child.start()
        got = {
            path: (times, steps, peak, error) for path, times, steps, peak, error in (results.get() for _ in children)
        }
        for child in children:
            child.join()
    for path, (_, _, _, error) in got.items():
        if error:
            raise RuntimeError(f"{preset}, {path} path: {error}")
    taken = {path: got[path][1] for path in paths}
    if len(set(taken.values())) > 1:
        raise RuntimeError(f"{preset}: the paths took different optimizer steps: {taken}")
    rate = {path: got[path][1] / sum(got[path][0]) for path in paths}
    run = {
        "steps": taken["lab"],
        "lab": rate["lab"],
        "bare": rate["bare"],
        "ratio": rate["lab"] / rate["bare"],
        "lab_rss": got["lab"][2],
        "bare_rss": got["bare"][2],
    }
    if floor:
        run.update(floor=rate["floor"], floor_ratio=rate["floor"] / rate["bare"])
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per preset, rounded up to whole epochs")
    parser.add_argument("--repeats", type=int, default=1, help="lockstep runs per preset; medians are reported")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), help="model/data pairs (default: all)")
    parser.add_argument(
        "--floor", action="store_true", help="also time the bare loop inside a plain Lightning fit (a third path)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="instead: whether model.compile=true wins over each default run"
    )
    args = parser.parse_args()
    sys.modules.setdefault(MODULE, sys.modules[__name__])
    if args.compile:
        print_compile_table(args.presets)
        return
    rows = []
    for preset in args.presets:
        runs = [bench_preset(preset, args.steps, args.floor) for _ in range(args.repeats)]
        row = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        # The spread says whether a preset's median is below another's or only within the host's scatter.
        row["ratios"] = (min(run["ratio"] for run in runs), max(run["ratio"] for run in runs))
        rows.append((preset, row))
        print(f"{preset}: ratio {row['ratio']:.3f}", file=sys.stderr, flush=True)
    header = [
        "model / data",
        "steps",
        "lab steps/s",
        "bare loop steps/s",
        "ratio",
        "ratio min-max",
        "lab peak RSS (MiB)",
        "bare peak RSS (MiB)",
        *(["Lightning floor steps/s", "floor ratio"] if args.floor else []),
    ]
    cells = [
        [
            preset,
            f"{row['steps']:.0f}",
            f"{row['lab']:.1f}",
            f"{row['bare']:.1f}",
            f"{row['ratio']:.3f}",
            "{:.3f}-{:.3f}".format(*row["ratios"]),
            f"{row['lab_rss']:.0f}",
            f"{row['bare_rss']:.0f}",
            *([f"{row['floor']:.1f}", f"{row['floor_ratio']:.3f}"] if args.floor else []),
        ]
        for preset, row in rows
    ]
    print(markdown_table(header, cells))
    print(f"min ratio: {min(row['ratio'] for _, row in rows):.3f}")


def print_compile_table(presets: list[str]) -> None:
    header = [
        "model / data",
        "eager ms/step",
        "compiled ms/step",
        "compile s",
        "default run steps",
        "training s eager",
        "training s compiled (incl. compile)",
        "compile wins",
    ]
    rows = []
    for preset in presets:
        gain = compile_gain(preset)
        rows.append(
            [
                preset,
                f"{gain['eager_ms']:.2f}",
                f"{gain['compiled_ms']:.2f}",
                f"{gain['compile_s']:.1f}",
                f"{gain['steps']}",
                f"{gain['eager_run_s']:.0f}",
                f"{gain['compiled_run_s']:.0f}",
                "yes" if gain["compiled_run_s"] < gain["eager_run_s"] else "no",
            ]
        )
        print(f"{preset}: {rows[-1]}", file=sys.stderr, flush=True)
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
