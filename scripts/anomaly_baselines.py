"""Two one-line anomaly detectors to hold a trained model against, on the same files and split.

    python scripts/anomaly_baselines.py --train normal.csv --threshold labelled.csv --test labelled_test.csv \
        --window 64 [--run <run dir of python -m src.train ... data=csv>]

- rolling median: a point's distance to the median of the ``window`` points around it;
- nearest window: each ``window``-point window's Euclidean distance to its nearest z-normalised
  training window (a point takes the largest distance of the windows that cover it).

Each threshold is the one that maximises F-beta on the threshold file, as the lab's scorer does. With
``--run``, the lab's own test metrics (its ``metrics.json``) are printed beside them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from src.data.csv_series import ColumnSpec, open_csv, read_series
from src.metrics.anomaly import anomaly_metrics
from src.models.scorer import best_f_beta_threshold

COLUMNS = ("auroc", "auprc", "f_beta", "event_recall", "event_precision", "top_score_in_anomaly")


def rolling_median_scores(values: torch.Tensor, window: int) -> torch.Tensor:
    half = window // 2
    padded = torch.cat([values[:1].expand(half, -1), values, values[-1:].expand(half, -1)])
    medians = padded.unfold(0, 2 * half + 1, 1).median(-1).values
    return (values - medians).abs().sum(1)


def znormalised_windows(values: torch.Tensor, window: int) -> torch.Tensor:
    w = values.unfold(0, window, 1).flatten(1)  # (N - window + 1, F * window)
    return (w - w.mean(1, keepdim=True)) / w.std(1, keepdim=True).clamp(min=1e-8)


def nearest_window_scores(train: torch.Tensor, values: torch.Tensor, window: int) -> torch.Tensor:
    reference = znormalised_windows(train, window)
    windows = znormalised_windows(values, window)
    nearest = torch.cat([torch.cdist(chunk, reference).min(1).values for chunk in windows.split(512)])
    scores = torch.zeros(len(values))
    for offset in range(window):  # a point takes the largest distance of the windows that cover it
        scores[offset : offset + len(nearest)] = torch.maximum(scores[offset : offset + len(nearest)], nearest)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--threshold", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--run", help="a run dir of src.train on the same files: its test metrics join the table")
    args = parser.parse_args()
    spec = ColumnSpec(None, "auto", "auto", "error")
    train, columns = read_series(open_csv(args.train, "--train"), spec)
    threshold = read_series(open_csv(args.threshold, "--threshold"), spec, columns)[0]
    test = read_series(open_csv(args.test, "--test"), spec, columns)[0]
    shift, scale = train.values.mean(0), train.values.std(0).clamp(min=1e-8)
    normal, tuning, scored = ((s.values - shift) / scale for s in (train, threshold, test))
    detectors = {
        "rolling median": lambda v: rolling_median_scores(v, args.window),
        "nearest z-normalised window": lambda v: nearest_window_scores(normal[~train.labels], v, args.window),
    }
    rows = {}
    if args.run:
        metrics = json.loads(Path(args.run, "metrics.json").read_text())
        rows["the lab (--run)"] = {name: metrics.get(f"test/{name}", float("nan")) for name in COLUMNS}
    for name, detector in detectors.items():
        tau, _ = best_f_beta_threshold(detector(tuning), threshold.labels, args.beta)
        scores = detector(scored)
        rows[name] = anomaly_metrics(scores, scores > tau, test.labels, args.beta)
    print("| detector | " + " | ".join(COLUMNS) + " |")
    print("| --- |" + " --- |" * len(COLUMNS))
    for name, found in rows.items():
        print(f"| {name} | " + " | ".join(f"{found[c]:.3f}" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
