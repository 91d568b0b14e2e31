"""Same config and seed, same numbers; the data depends on data.* only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import hydra
import torch

from tests.cli import run_commands
from tests.conftest import QUIET, compose_config

TINY = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    *QUIET,
    "model.net.num_layers=2",
    "model.net.dropout=0.3",
    "model.net.hidden_size=16",
]
WALL_TIME = "train/wall_time_s"  # a time, not a number of the model


def metrics_in(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop(WALL_TIME)
    return metrics


def test_same_config_and_seed_give_identical_metrics_run_after_run_and_in_a_multirun(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAB_OUTPUT_ROOT": str(tmp_path)}
    runs, sweeps = tmp_path / "train" / "runs", tmp_path / "train" / "multiruns"
    single = {"args": [*TINY, "seed=3"], "watch": str(runs)}
    results = run_commands([single, single, {"args": ["-m", *TINY, "seed=3,3"], "watch": str(sweeps)}], env)
    assert all(r["rc"] == 0 for r in results), [r["output"][-2000:] for r in results]
    (sweep,) = results[2]["created"]
    assert len(list(runs.iterdir())) == 2  # the multirun made no run dir of its own
    run_dirs = [Path(r["created"][0]) for r in results[:2]] + [Path(sweep) / "0", Path(sweep) / "1"]
    first, *others = [metrics_in(d) for d in run_dirs]
    assert "test/skill" in first and "val/skill" in first
    assert all(other == first for other in others)


def splits_and_first_order(*overrides: str, tmp_path: Path) -> list[torch.Tensor]:
    cfg = compose_config("train", list(overrides), tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup()
    first_batch = next(iter(datamodule.train_dataloader()))
    return [*datamodule.splits["train"], *datamodule.splits["test"], *first_batch]


def test_model_settings_and_seed_never_change_the_data(tmp_path: Path) -> None:
    reference = splits_and_first_order("seed=1", tmp_path=tmp_path)
    for overrides in (
        ["seed=2"],
        ["model=stacked_lstm", "model.optimizer.lr=0.1"],
        ["model.net.hidden_size=7", "seed=9"],
    ):
        assert all(torch.equal(a, b) for a, b in zip(reference, splits_and_first_order(*overrides, tmp_path=tmp_path)))
    changed = splits_and_first_order("data.seed=1", tmp_path=tmp_path)
    assert not torch.equal(reference[0], changed[0])
