"""Score a series the model has never seen: ``python -m src.predict ckpt_path=<ckpt> input=<file.csv>``.

Everything comes from the checkpoint (model and data configs, scaling, the fitted scorer), so it works
without the run directory or the training data. Writes one row per input row: the point's score and
flag (and its label, where the input has one); prints the metrics where it has labels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from src import runtime
from src.checks import InputFileError, load_checkpoint
from src.data.csv_series import ColumnSpec, chunks, head, open_csv, read_series
from src.metrics.anomaly import anomaly_metrics
from src.models.tasks.anomaly_detection import AnomalyDetectionTask

log = logging.getLogger(__name__)


def load_detector(ckpt_path: str, device: str) -> tuple[AnomalyDetectionTask, dict[str, Any]]:
    """The trained task with its fitted scorer, and the data config it was trained with."""
    checkpoint = load_checkpoint("ckpt_path", ckpt_path)
    lab_config = checkpoint.get("lab_config")
    if not lab_config or "scorer" not in lab_config["model"]:
        raise InputFileError(f"ckpt_path={ckpt_path}: not an anomaly model (train one with data=anomaly or data=csv)")
    task = hydra.utils.instantiate(lab_config["model"])
    task.load_state_dict(checkpoint["state_dict"])
    if not task.scorer.fitted:
        raise InputFileError(f"ckpt_path={ckpt_path}: its scorer was never fitted (test the checkpoint first)")
    return task.to(device).eval(), lab_config["data"]


def write_scores(
    source: Path, output: Path, timestamp: str | None, scores: np.ndarray, flags: np.ndarray, labels: np.ndarray | None
) -> None:
    """One row per input row, written a chunk at a time (the input's timestamps are re-read, not held)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    start = 0
    for i, frame in enumerate(chunks(source, usecols=[timestamp] if timestamp else [0])):
        end = start + len(frame)
        rows = pd.DataFrame({"score": scores[start:end], "flag": flags[start:end].astype(int)})
        rows.insert(0, *(("timestamp", frame[timestamp].to_numpy()) if timestamp else ("row", np.arange(start, end))))
        if labels is not None:
            rows["label"] = labels[start:end].astype(int)
        rows.to_csv(partial, mode="w" if i == 0 else "a", header=i == 0, index=False)
        start = end
    partial.replace(output)  # an earlier output stays whole until the new one is


def predict(cfg: DictConfig) -> dict[str, float]:
    task, data_config = load_detector(cfg.ckpt_path, cfg.device)
    scorer = task.scorer
    spec = ColumnSpec(
        None,
        data_config.get("timestamp_column", "auto"),
        data_config.get("label_column", "auto"),
        cfg.fill or data_config.get("fill", "error"),
    )
    source = open_csv(cfg.input, "input")
    timestamp, label = spec.resolve(source, head(source))[1:]
    series, _ = read_series(source, spec, scorer.columns)
    if len(series.values) < scorer.window:
        raise InputFileError(f"input={source}: {len(series.values)} rows is shorter than one window ({scorer.window})")
    values = (series.values - scorer.shift.cpu()) / scorer.scale.cpu()
    scores = task.point_scores(values)
    flags = scorer.flags(scores.to(scorer.tau.device)).cpu()
    output = Path(cfg.output or Path(cfg.paths.output_dir) / "scores.csv")
    labels = series.labels.numpy() if label else None
    write_scores(source, output, timestamp, scores.numpy(), flags.numpy(), labels)
    log.info("threshold tau=%.4g: %s", float(scorer.tau), scorer.rule)
    log.info("%d of %d points flagged; scores written to %s", int(flags.sum()), len(flags), output)
    metrics = {"predict/points": float(len(flags)), "predict/flagged": float(flags.sum())}
    if label:
        found = anomaly_metrics(scores, flags, series.labels, scorer.beta)
        metrics.update({f"predict/{name}": value for name, value in found.items()})
    runtime.write_metrics(metrics, cfg.paths.output_dir)
    runtime.report(metrics, cfg.paths.output_dir, title=f"predict: {source}")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        torch.set_grad_enabled(False)
        predict(cfg)
    except Exception as error:
        runtime.fail(cfg.paths.output_dir, error)


if __name__ == "__main__":
    main()
