"""Point-wise and event-wise scores of an anomaly detector on one labelled series.

Point-adjusted F1 is deliberately absent: it rewards random scores (Kim et al., AAAI 2022).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_fbeta_score,
    binary_precision,
    binary_recall,
)


def segments(labels: torch.Tensor) -> torch.Tensor:
    """(K, 2) [start, end) of every run of True in ``labels`` (N,)."""
    edges = torch.diff(labels.long(), prepend=torch.zeros(1, dtype=torch.long), append=torch.zeros(1, dtype=torch.long))
    return torch.stack([torch.nonzero(edges == 1).flatten(), torch.nonzero(edges == -1).flatten()], dim=1)


def touched_share(segs: torch.Tensor, other: torch.Tensor) -> float:
    """Share of the segments ``segs`` that hold at least one True point of ``other``."""
    if not len(segs):
        return float("nan")
    counts = torch.cumsum(torch.cat([torch.zeros(1), other.float()]), 0)
    return float(((counts[segs[:, 1]] - counts[segs[:, 0]]) > 0).float().mean())


def anomaly_metrics(scores: torch.Tensor, flags: torch.Tensor, labels: torch.Tensor, beta: float) -> dict[str, float]:
    """``precision``, ``recall``, ``f_beta`` of the flags; ``auroc`` and ``auprc`` of the scores (no
    threshold); ``event_recall`` (share of true anomalous segments with a flagged point) and
    ``event_precision`` (share of flagged segments that touch a true one); ``top_score_in_anomaly``
    (1 when the highest-scoring point lies inside a true anomaly, the UCR archive's scoring)."""
    labels, flags = labels.bool(), flags.bool()
    target = labels.long()
    normalised = scores.double() / scores.max().clamp(min=1e-12)  # in [0, 1]: no sigmoid in torchmetrics
    out = {
        "precision": binary_precision(flags.long(), target),
        "recall": binary_recall(flags.long(), target),
        "f_beta": binary_fbeta_score(flags.long(), target, beta=beta),
        "n_anomalous_points": torch.tensor(float(labels.sum())),
    }
    if labels.any() and not labels.all():
        out["auroc"] = binary_auroc(normalised, target)
        out["auprc"] = binary_average_precision(normalised, target)
    out = {name: float(value) for name, value in out.items()}
    out["event_recall"] = touched_share(segments(labels), flags)
    out["event_precision"] = touched_share(segments(flags), labels)
    out["top_score_in_anomaly"] = float(labels[int(torch.argmax(scores))])
    return out
