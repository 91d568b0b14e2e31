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

A shared machine's speed drifts by tens of per cent over minutes, so the two paths run in lockstep,
one epoch at a time, each in its own process (so that each has its own peak RSS): the lab's epoch 0,
then the bare loop's epoch 0, then the lab's epoch 1, and so on; only one runs at a time. A lab epoch
is timed from its start to the next one's (the last to the end of fit), so it holds its training,
validation, figures and checkpoint writes; set-up before the first epoch is not timed in either path.
The lab keeps its default ``trainer.max_epochs`` and is stopped by ``trainer.max_steps`` after the
bench's steps, so that its per-epoch work (a figure every ``every_n_epochs`` epochs, the last epoch's
figure) follows a default run's schedule rather than a run of a few epochs, whose first and last epochs
both draw one.

    python scripts/bench.py [--steps 100] [--repeats 1] [--presets repeat_vector/seeded ...]
    python scripts/bench.py --compile [--presets ...]

``--compile`` prints instead, for each preset, the bare loop's seconds per step with the net eager
and under ``nn.Module.compile`` (what ``model.compile=true`` does), the compile time, and whether
compiling wins over the training steps of a default run (``trainer.max_epochs`` epochs), compiling
with an empty cache (a warm one, from an earlier run of the same net, compiles faster).

``--steps`` is rounded up to whole epochs of each dataset (both paths validate once per epoch).
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
    """Process 0 of the lockstep: a Lightning fit, whose epoch runs from its start to the next one's."""

    lockstep: Lockstep | None = None
    steps = 0  # optimizer steps of the fit, set when it ends

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:
            EpochClock.lockstep.end(0)
        EpochClock.lockstep.begin(0)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        EpochClock.lockstep.end(0)
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


def bare_parts(cfg: DictConfig) -> tuple[Any, torch.nn.Module, Any, Callable, Callable]:
    """(datamodule, net, scheduler, loss of a batch, one training step) as the bare loop builds them."""
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

    return datamodule, net, scheduler, loss_of, train_step


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
    datamodule, net, scheduler, loss_of, train_step = bare_parts(cfg)
    detection = detection_metric(cfg, datamodule, net)
    tokens = datamodule.batch_kind == "tokens"
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
            val_loss, exact = 0.0, 0
            for batch in val_loader:
                val_loss += loss_of(batch, 1.0 if tokens else 0.0).item() * batch.size
                if tokens:
                    decoded = net.decode(batch.src, batch.src_lengths, batch.tgt.shape[1]).tokens
                    exact += int((decoded == batch.tgt).all(-1).sum())
            if detection is not None:
                detection()
        if scheduler is not None:
            scheduler.step(val_loss)
        lockstep.end(1)
    return steps


def compile_path(cfg: DictConfig, results: Any) -> None:
    """In a child process: seconds per step of the bare loop's net eager and under ``nn.Module.compile``
    (each the second of two epochs), and the compile time (the first compiled epoch's excess)."""
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)  # the compiler's warnings, too
    try:
        datamodule, net, _, _, train_step = bare_parts(cfg)
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
    """In a child process: run one path, send (times, steps, peak RSS in MiB) or the error."""
    quiet = os.open(os.devnull, os.O_WRONLY)  # the lab's reports would bury the table
    os.dup2(quiet, 1)
    try:
        steps = lab_path(cfg, lockstep) if path == "lab" else bare_path(cfg, lockstep, epochs)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.put((path, lockstep.times, steps, peak, None))
    except BaseException as error:  # the other path must not wait for a turn that never comes
        lockstep.close()
        results.put((path, [], 0, 0.0, f"{type(error).__name__}: {error}"))


def bench_preset(preset: str, min_steps: int) -> dict[str, Any]:
    """Both paths of one preset in lockstep; each one's steps/s and peak RSS."""
    with tempfile.TemporaryDirectory() as out:
        per_epoch = steps_per_epoch(preset_config(preset, out))
        epochs = max(1, math.ceil(min_steps / per_epoch))
        cfg = preset_config(preset, out, max_steps=epochs * per_epoch)
        cfg.trainer.max_epochs = max(cfg.trainer.max_epochs, epochs)
        lockstep, results = Lockstep(2), CTX.Queue()
        children = [
            CTX.Process(target=run_path, args=(path, cfg, lockstep, epochs, results)) for path in ("lab", "bare")
        ]
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
    (lab_times, lab_steps, lab_peak, _), (bare_times, bare_steps, bare_peak, _) = got["lab"], got["bare"]
    if lab_steps != bare_steps:
        raise RuntimeError(f"{preset}: the lab took {lab_steps} optimizer steps, the bare loop {bare_steps}")
    lab_rate, bare_rate = lab_steps / sum(lab_times), bare_steps / sum(bare_times)
    return {
        "steps": lab_steps,
        "lab": lab_rate,
        "bare": bare_rate,
        "ratio": lab_rate / bare_rate,
        "lab_rss": lab_peak,
        "bare_rss": bare_peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per preset, rounded up to whole epochs")
    parser.add_argument("--repeats", type=int, default=1, help="lockstep runs per preset; medians are reported")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), help="model/data pairs (default: all)")
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
        runs = [bench_preset(preset, args.steps) for _ in range(args.repeats)]
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
