"""A run SIGKILLed mid-epoch and resumed from its last.ckpt ends with the metrics.json of a run never
stopped: same optimizer, scheduler, epoch, step, generators and data order (CPU, deterministic)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl

from tests.conftest import QUIET, ROOT

REAL = [
    "model=repeat_vector",
    "data=seeded",
    "model.net.hidden_size=16",
    "model.net.dropout=0.2",
    "model.net.num_layers=2",
]
TOKENS = [
    "model=seq2seq",
    "data=increment",
    "callbacks=seq2seq",
    "model.net.hidden_size=16",
    "model.net.embedding_dim=8",
    "model.teacher_forcing=0.5",
    "data.max_len=6",
    "model.scheduler.patience=0",
    "model.optimizer.lr=1e-5",
]
SMALL = [
    "data.n_train=96",
    "data.n_val=32",
    "data.n_test=32",
    "data.batch_size=16",
    "trainer.max_epochs=5",
    "trainer.deterministic=true",
]
KILL_EPOCH, KILL_BATCH = 2, 3
# A time, not a number of the model: the one key two identical runs cannot share.
WALL_TIME = "train/wall_time_s"


class PauseMidEpoch(pl.Callback):
    """Signals (a marker file) that the run is mid-epoch with a checkpoint written, then waits to be killed."""

    def __init__(self, marker: str, epoch: int = KILL_EPOCH, batch: int = KILL_BATCH) -> None:
        self.marker, self.epoch, self.batch = Path(marker), epoch, batch

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            self.marker.write_text(str(trainer.global_step))
            time.sleep(600)


def start(args: list[str], run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "src.train", *QUIET, *args, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]


def metrics_of(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert WALL_TIME in metrics
    return {k: v for k, v in metrics.items() if k != WALL_TIME}


def kill_and_resume(tmp_path: Path, args: list[str]) -> tuple[dict, dict]:
    """Metrics of an uninterrupted run, and of a run killed mid-epoch then resumed, of one config."""
    marker = tmp_path / "paused"
    whole = start(args, tmp_path / "whole")
    pause = [f"+callbacks.pause._target_={__name__}.PauseMidEpoch", f"+callbacks.pause.marker={marker}"]
    killed = start([*args, *pause], tmp_path / "killed")
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[0][-3000:]
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert last.exists() and not (tmp_path / "killed" / "metrics.json").exists()
    finish(whole)
    resumed = start([*args, f"ckpt_path={last}"], tmp_path / "resumed")
    finish(resumed)
    return metrics_of(tmp_path / "whole"), metrics_of(tmp_path / "resumed")


# Two optimizer steps per Lightning step: the kill then falls between two executions of an epoch
# (PauseMidEpoch sees batch_idx 0, 1, 3, 5, the last batch each execution took).
def test_killed_and_resumed_regression_run_ends_like_an_uninterrupted_one(tmp_path: Path) -> None:
    whole, resumed = kill_and_resume(tmp_path, [*REAL, *SMALL, "model.steps_per_execution=2"])
    assert resumed == whole


def test_killed_and_resumed_token_run_ends_like_an_uninterrupted_one(tmp_path: Path) -> None:
    whole, resumed = kill_and_resume(tmp_path, [*TOKENS, *SMALL, "model.steps_per_execution=1"])
    assert resumed == whole
