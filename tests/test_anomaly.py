"""Anomaly detection: the scorer, the series splits, data=anomaly, data=csv and src.predict."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from src.checks import ConfigError
from src.data.anomaly import KINDS, SyntheticAnomalyDataModule
from src.data.batch import SeqBatch
from src.data.module import TensorBatchLoader
from src.data.series import window_starts
from src.metrics.anomaly import anomaly_metrics, segments
from src.models.scorer import MahalanobisScorer, best_f_beta_threshold
from src.train import train
from tests.conftest import ROOT

RECONSTRUCTION_MODELS = ["repeat_vector", "stacked_lstm", "encdec_ad"]
# A few seconds a run: short series, small windows, two epochs.
SMALL_SERIES = [
    "data.train_length=1200",
    "data.threshold_length=1200",
    "data.test_length=1200",
    "data.anomalies_per_series=6",
    "data.window=16",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=null",
    "trainer.limit_val_batches=null",
    "trainer.limit_test_batches=null",
    "logger=csv",
]


# ---- pieces ---------------------------------------------------------------------------------------


def test_each_training_epoch_takes_a_fresh_random_share_of_every_window() -> None:
    windows = torch.arange(40, dtype=torch.float32).view(40, 1, 1)
    lengths = torch.ones(40, dtype=torch.long)
    loader = TensorBatchLoader(SeqBatch(windows, lengths, windows, lengths), batch_size=4, shuffle=True, subsample=4)
    epochs = [torch.cat([batch.src.flatten() for batch in loader]) for _ in range(8)]
    assert len(loader) == 3 and all(len(epoch) == 10 for epoch in epochs)  # 40 windows / stride 4
    assert len({tuple(epoch.tolist()) for epoch in epochs}) == 8  # a new draw every epoch
    assert len(torch.cat(epochs).unique()) > 30  # over epochs, windows at every start point
    unshuffled = TensorBatchLoader(SeqBatch(windows, lengths, windows, lengths), batch_size=4, subsample=4)
    assert len(torch.cat([batch.src.flatten() for batch in unshuffled])) == 40  # val and test: every window


def test_the_weighted_combine_trusts_a_window_less_the_worse_it_is_rebuilt() -> None:
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 90.0]], dtype=torch.float64)
    weights = MahalanobisScorer(1, combine="weighted").window_weights(scores)
    assert torch.allclose(weights, torch.tensor([[1.0] * 4, [1 / 24] * 4], dtype=torch.float64))
    # A normal point that the clean window scores 1 and the window with the anomaly 2: 1.04, not 1.5.
    combined = (1.0 * weights[0, 0] + 2.0 * weights[1, 0]) / (weights[0, 0] + weights[1, 0])
    assert combined == pytest.approx(1.04)
    assert torch.equal(MahalanobisScorer(1, combine="mean").window_weights(scores), torch.ones_like(scores))


@pytest.mark.parametrize("stride,scored_at", [(1, 1), (None, 4), (2, 2)])
def test_the_scorer_rebuilds_windows_at_its_own_stride_or_the_training_one(stride: int | None, scored_at: int) -> None:
    scorer = MahalanobisScorer(2, stride=stride)
    scorer.set_input(torch.zeros(2), torch.ones(2), window=8, stride=4, columns=["a", "b"])
    assert scorer.stride == scored_at


def test_a_scorer_stride_longer_than_the_window_is_refused_by_key() -> None:
    with pytest.raises(ConfigError, match=r"model.scorer.stride=9 must lie in \[1, 8\]"):
        MahalanobisScorer(2, stride=9).set_input(torch.zeros(2), torch.ones(2), window=8, stride=4, columns=["a", "b"])


@pytest.mark.parametrize("length,window,stride", [(10, 4, 3), (10, 4, 2), (4, 4, 1), (100, 32, 8), (33, 32, 16)])
def test_windows_cover_every_point_and_stay_inside(length: int, window: int, stride: int) -> None:
    starts = window_starts(length, window, stride)
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts.tolist():
        assert 0 <= s <= length - window
        covered[s : s + window] = True
    assert covered.all()
    assert len(window_starts(window - 1, window, stride)) == 0


def test_scorer_is_the_mahalanobis_distance_of_the_ml_fit() -> None:
    errors = torch.randn(5000, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 0.5]) + 1
    scorer = MahalanobisScorer(3, shrinkage=0.0)
    scorer.fit_distribution(errors)
    mu = errors.double().mean(0)
    sigma = torch.cov(errors.double().T, correction=0)
    e = torch.tensor([[3.0, -1.0, 2.0]])
    expected = ((e.double() - mu) @ torch.linalg.inv(sigma) @ (e.double() - mu).T).item()
    assert scorer.score(e).item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("case", ["duplicated channel", "constant channel", "all identical"])
def test_singular_error_covariance_neither_crashes_nor_explodes(case: str) -> None:
    base = torch.rand(1000, 3, generator=torch.Generator().manual_seed(1))
    errors = {
        "duplicated channel": torch.cat([base, base[:, :1]], 1),
        "constant channel": torch.cat([base, torch.full((1000, 1), 0.3)], 1),
        "all identical": torch.full((1000, 4), 0.2),
    }[case]
    scorer = MahalanobisScorer(4)
    scorer.fit_distribution(errors)
    normal = scorer.score(errors)
    assert torch.isfinite(normal).all() and normal.mean() < 100
    far = scorer.score(errors[:5] + 5.0)
    assert torch.isfinite(far).all() and (far > normal.max()).all()


def test_f_beta_threshold_flags_what_maximises_f_beta() -> None:
    scores = torch.tensor([0.1, 0.2, 0.3, 5.0, 6.0, 0.4, 7.0, 0.35])
    labels = torch.tensor([0, 0, 0, 1, 1, 0, 1, 0]).bool()
    tau, f = best_f_beta_threshold(scores, labels, beta=0.5)
    assert f == pytest.approx(1.0)
    assert ((scores > tau) == labels).all()


def test_threshold_falls_back_to_the_unsupervised_rule_and_says_so() -> None:
    scorer = MahalanobisScorer(2, threshold="f_beta", fallback="mean_std", k=3.0)
    normal = torch.linspace(0, 1, 101)
    rule = scorer.choose_threshold(normal, torch.rand(50), torch.zeros(50, dtype=torch.bool))
    assert rule.startswith("mean_std") and "no anomalies" in rule
    assert float(scorer.tau) == pytest.approx(float(normal.mean() + 3 * normal.std()))
    quantile = MahalanobisScorer(2, threshold="quantile", quantile=0.9)
    quantile.choose_threshold(normal, torch.rand(50), torch.ones(50, dtype=torch.bool))
    assert float(quantile.tau) == pytest.approx(0.9, abs=1e-6)


def test_event_and_point_metrics() -> None:
    labels = torch.zeros(100, dtype=torch.bool)
    labels[10:20] = labels[50:60] = labels[80:85] = True
    flags = torch.zeros(100, dtype=torch.bool)
    flags[15] = flags[52:54] = flags[30:33] = True  # two true segments touched, one false alarm
    scores = flags.double() + 0.01 * torch.arange(100)
    m = anomaly_metrics(scores, flags, labels, beta=1.0)
    assert segments(labels).tolist() == [[10, 20], [50, 60], [80, 85]]
    assert m["event_recall"] == pytest.approx(2 / 3) and m["event_precision"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(3 / 6) and m["recall"] == pytest.approx(3 / 25)
    assert m["top_score_in_anomaly"] == 1.0  # the highest score, at 53, is inside [50, 60)
    assert 0.0 <= m["auroc"] <= 1.0 and 0.0 <= m["auprc"] <= 1.0


def test_synthetic_series_splits_by_time_with_every_kind_and_not_all_out_of_range() -> None:
    dm = SyntheticAnomalyDataModule()
    dm.setup()
    train, val = dm.series["train"], dm.series["val"]
    assert not train.labels.any() and not val.labels.any()
    assert len(train.values) + len(val.values) == 8000  # val is the end of the normal series, not a shuffle
    test = dm.series["test"]
    segs = segments(test.labels)
    assert len(segs) == 12
    low, high = train.values.min(0).values, train.values.max(0).values
    inside = []
    for a, b in segs.tolist():
        piece = test.values[a:b]
        inside.append(bool(((piece >= low) & (piece <= high)).all()))
    in_range_kinds = {KINDS[i % len(KINDS)] for i, ok in enumerate(inside) if ok}
    assert {"flat_line", "frequency", "decorrelation"} <= in_range_kinds, in_range_kinds
    # scaling is fitted on the train split: standardised there, not on the test data
    assert train.values.mean(0).abs().max() < 1e-4 and (train.values.std(0) - 1).abs().max() < 1e-3


# ---- the task, every reconstruction model ------------------------------------------------------------


@pytest.mark.parametrize("model", RECONSTRUCTION_MODELS)
def test_every_reconstruction_model_runs_through_the_scorer(make_cfg, tmp_path: Path, model: str) -> None:
    metrics = train(make_cfg(f"model={model}", "data=anomaly", *SMALL_SERIES))
    for name in (
        "auroc",
        "auprc",
        "f_beta",
        "precision",
        "recall",
        "event_recall",
        "event_precision",
        "top_score_in_anomaly",
        "tau",
    ):
        assert math.isfinite(metrics[f"test/{name}"]), name
    assert 0.5 < metrics["test/auroc"] <= 1.0
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    state = best["state_dict"]
    assert state["scorer._extra_state"]["rule"].startswith("f_beta")
    assert float(state["scorer.tau"]) == pytest.approx(metrics["test/tau"])
    assert best["lab_config"]["data"]["window"] == 16


def test_the_best_checkpoint_is_the_epoch_that_ranks_the_threshold_split_best(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("model=encdec_ad", "data=anomaly", *SMALL_SERIES, "trainer.max_epochs=4")
    assert cfg.model.monitor == "val/threshold_auprc"
    assert cfg.callbacks.model_checkpoint.mode == "max"
    train(cfg)
    rows = [r for r in csv.DictReader(next(tmp_path.glob("**/metrics.csv")).open()) if r.get("val/threshold_auprc")]
    by_epoch = {int(r["epoch"]): float(r["val/threshold_auprc"]) for r in rows}
    assert sorted(by_epoch) == [0, 1, 2, 3] and all(0.0 < v <= 1.0 for v in by_epoch.values())
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] == max(by_epoch, key=by_epoch.get)
    assert best["val_metrics"]["val/threshold_auroc"] > 0.5


@pytest.mark.parametrize(
    ("metric", "mode"),
    [
        ("val/loss", "min"),
        ("val/mse", "min"),
        ("val/threshold_auprc", "max"),
        ("val/exact_match", "max"),
        ("val/skill", "max"),
        ("val/token_accuracy", "max"),
        ("test/auprc", "max"),
    ],
)
def test_a_monitored_metric_is_maximised_when_it_is_better_higher(metric: str, mode: str) -> None:
    from src.runtime import monitor_mode

    assert monitor_mode(metric) == mode


def test_monitoring_detection_without_labelled_anomalies_is_refused_by_key(tmp_path: Path) -> None:
    sensor_frame(1500, seed=0).to_csv(tmp_path / "normal.csv", index=False)
    result = run_module(
        "src.train",
        *CSV_TRAIN,
        "model.monitor=val/threshold_auprc",
        f"data.train_file={tmp_path / 'normal.csv'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode != 0
    assert "model.monitor=val/threshold_auprc needs normal and anomalous points in the threshold split" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("model", ["autoregressive_rnn", "flux_rnn"])
def test_a_model_that_cannot_reconstruct_is_refused_naming_both_keys(make_cfg, model: str) -> None:
    with pytest.raises(Exception) as info:
        train(make_cfg(f"model={model}", "data=anomaly", *SMALL_SERIES))
    error = info.value
    while error.__cause__ is not None:
        error = error.__cause__
    assert "model.net" in str(error) and "data=anomaly" in str(error), error


def test_eval_rescores_with_the_saved_scorer(make_cfg, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from src.eval import evaluate
    from tests.conftest import compose_config

    cfg = make_cfg("model=encdec_ad", "data=anomaly", *SMALL_SERIES)
    metrics = train(cfg)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "eval").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    eval_cfg = compose_config(
        "eval", [f"ckpt_path={tmp_path / 'checkpoints' / 'best.ckpt'}", "logger=[]"], tmp_path / "eval"
    )
    evaluated = evaluate(eval_cfg)
    for name in ("test/auroc", "test/f_beta", "test/tau", "test/event_recall"):
        assert evaluated[name] == pytest.approx(metrics[name], rel=1e-6), name


# ---- the user's own CSV, and src.predict ----------------------------------------------------------


def sensor_frame(length: int, seed: int, t0: int = 0) -> pd.DataFrame:
    """Two correlated sensors, a timestamp and a label column (all normal)."""
    rng = np.random.default_rng(seed)
    t = np.arange(t0, t0 + length)
    a = np.sin(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(length)
    b = 0.5 * np.sin(2 * np.pi * t / 25 + 1.0) + 0.05 * rng.standard_normal(length)
    return pd.DataFrame({"timestamp": t, "temp": a, "pressure": b, "is_anomaly": 0})


def run_module(module: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=ROOT,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


CSV_TRAIN = [
    "model=repeat_vector",
    "model.net.hidden_size=32",
    "data=csv",
    "data.window=25",
    "data.stride=5",
    "trainer.max_epochs=15",
    "logger=csv",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "~callbacks.model_summary",
]


def test_csv_round_trip_train_predict_and_predict_from_a_moved_checkpoint(tmp_path: Path) -> None:
    history = sensor_frame(3000, seed=0)
    for start in (500, 2500):  # one labelled anomaly kept out of training, one in the test split (the last 30%)
        history.loc[start : start + 19, "pressure"] += 1.0
        history.loc[start : start + 19, "is_anomaly"] = 1
    history.to_csv(tmp_path / "history.csv", index=False)
    unseen = sensor_frame(1000, seed=1, t0=3000)
    unseen.loc[400:429, "temp"] = unseen.loc[400, "temp"] + 1.5  # a stuck and shifted sensor
    unseen.loc[400:429, "is_anomaly"] = 1
    unseen.to_csv(tmp_path / "unseen.csv", index=False)
    run = tmp_path / "run"
    trained = run_module("src.train", *CSV_TRAIN, f"data.train_file={tmp_path / 'history.csv'}", f"hydra.run.dir={run}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/auroc"] > 0.9 and metrics["test/event_recall"] == 1.0

    def predict(ckpt: Path, out: Path) -> pd.DataFrame:
        done = run_module(
            "src.predict", f"ckpt_path={ckpt}", f"input={tmp_path / 'unseen.csv'}", f"hydra.run.dir={out}"
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return pd.read_csv(out / "scores.csv")

    scores = predict(run / "checkpoints" / "best.ckpt", tmp_path / "p1")
    assert list(scores.columns) == ["timestamp", "score", "flag", "label"]
    assert len(scores) == len(unseen) and (scores["timestamp"] == unseen["timestamp"]).all()
    assert scores.loc[400:429, "flag"].any(), "the injected anomaly was not flagged"
    assert scores.loc[400:429, "score"].max() > 10 * scores.loc[:300, "score"].median()
    assert json.loads((tmp_path / "p1" / "metrics.json").read_text())["predict/event_recall"] == 1.0

    moved = tmp_path / "elsewhere" / "best.ckpt"
    moved.parent.mkdir()
    shutil.move(str(run / "checkpoints" / "best.ckpt"), moved)
    shutil.rmtree(run)
    again = predict(moved, tmp_path / "p2")
    pd.testing.assert_frame_equal(scores, again)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def good_csv(path: Path, length: int = 400) -> Path:
    sensor_frame(length, seed=2).to_csv(path, index=False)
    return path


BAD_INPUTS = {
    "missing file": (lambda d: d / "nope.csv", {}, ["nope.csv", "no such file"]),
    "empty file": (lambda d: write(d / "empty.csv", ""), {}, ["empty.csv", "empty"]),
    "header only": (lambda d: write(d / "header.csv", "timestamp,temp\n"), {}, ["header.csv", "no rows"]),
    "non-numeric column": (
        lambda d: write(d / "text.csv", "temp,pressure\n1.0,2.0\n1.5,high\n" + "1.0,2.0\n" * 100),
        {"data.columns": "[temp,pressure]"},
        ["text.csv", "'pressure'", "line 3", "'high'"],
    ),
    "NaN value": (
        lambda d: write(d / "nan.csv", "temp\n" + "1.0\n" * 50 + "nan\n" + "1.0\n" * 100),
        {},
        ["nan.csv", "'temp'", "line 52", "data.fill"],
    ),
    "inf value": (
        lambda d: write(d / "inf.csv", "temp\n" + "1.0\n" * 10 + "inf\n" + "1.0\n" * 100),
        {},
        ["inf.csv", "'temp'", "line 12"],
    ),
    "label not 0/1": (
        lambda d: write(d / "label.csv", "temp,is_anomaly\n" + "1.0,0\n" * 20 + "1.0,2\n" + "1.0,0\n" * 100),
        {},
        ["label.csv", "'is_anomaly'", "line 22", "0/1"],
    ),
    "shorter than one window": (
        lambda d: good_csv(d / "short.csv", 20),
        {"data.test_file": "short.csv", "data.train_file": "normal.csv"},
        ["short.csv", "shorter than one window"],
    ),
    "no normal data left": (
        lambda d: write(d / "all_bad.csv", "temp,is_anomaly\n" + "1.0,1\n" * 400),
        {},
        ["all_bad.csv", "no 25-point window without anomalies"],
    ),
    "different columns": (
        lambda d: write(d / "other.csv", "timestamp,temp,humidity,is_anomaly\n" + "1,1.0,2.0,0\n" * 300),
        {"data.test_file": "other.csv", "data.train_file": "normal.csv"},
        ["other.csv", "differ", "train_file"],
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_csv_input_is_one_line_naming_file_and_place(tmp_path: Path, case: str) -> None:
    make, extra, expected = BAD_INPUTS[case]
    good_csv(tmp_path / "normal.csv")
    bad = make(tmp_path)
    files = {"data.train_file": bad, **{k: tmp_path / v for k, v in extra.items() if k.endswith("_file")}}
    others = [f"{k}={v}" for k, v in extra.items() if not k.endswith("_file")]
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "metrics.json").write_text('{"test/auroc": 0.9}\n')
    result = run_module(
        "src.train", *CSV_TRAIN, *[f"{k}={v}" for k, v in files.items()], *others, f"hydra.run.dir={earlier}"
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    line = (earlier / "error.txt").read_text().strip()
    assert len(line.splitlines()) == 1
    for fragment in expected:
        assert fragment in line, (fragment, line)
    assert line in result.stderr
    assert (earlier / "metrics.json").read_text() == '{"test/auroc": 0.9}\n'


# ---- the quality bar ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_anomaly_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """``python -m src.train model=encdec_ad data=anomaly`` at its defaults, once for the bars below."""
    from tests.conftest import QUIET, compose_config

    out = tmp_path_factory.mktemp("encdec_ad_anomaly")
    return train(compose_config("train", [*QUIET, "model=encdec_ad", "data=anomaly", "logger=csv"], out))


@pytest.mark.slow
def test_encdec_ad_flags_the_synthetic_anomalies(default_anomaly_run: dict[str, float]) -> None:
    assert default_anomaly_run["test/f_beta"] >= 0.8  # point-wise, at the default beta (0.5)
    assert default_anomaly_run["test/event_recall"] == 1.0


@pytest.mark.slow
def test_encdec_ad_ranks_the_synthetic_anomalies(default_anomaly_run: dict[str, float]) -> None:
    assert default_anomaly_run["test/auroc"] >= 0.95
