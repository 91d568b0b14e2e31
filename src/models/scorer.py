"""EncDec-AD's anomaly score (Malhotra et al. 2016): the Mahalanobis distance of a point's
reconstruction error from the errors on normal validation data, and its threshold."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics.functional.classification import binary_precision_recall_curve

from src.checks import check_choice, check_number

COMBINES = ("weighted", "mean", "max")
THRESHOLDS = ("f_beta", "mean_std", "quantile")
UNSUPERVISED = ("mean_std", "quantile")


class MahalanobisScorer(nn.Module):
    """Fits N(mu, Sigma) to error vectors e = |x - x'| (one per point, length n_features) by maximum
    likelihood; a point's score is (e - mu)^T Sigma^-1 (e - mu), flagged when it exceeds ``tau``.

    Sigma is shrunk towards a multiple of the identity, ``(1 - a) Sigma + a tr(Sigma)/F I``, so that
    channels whose errors are collinear or constant neither crash the inverse nor explode the score.
    Everything needed to score new data without the training data (mu, Sigma^-1, tau, the rule that
    chose tau, the input scaling and the windowing) is kept in the module's state dict.
    """

    def __init__(
        self,
        n_features: int,
        combine: str = "weighted",
        threshold: str = "f_beta",
        fallback: str = "quantile",
        beta: float = 0.5,
        k: float = 4.0,
        quantile: float = 0.999,
        shrinkage: float = 0.01,
        stride: int | None = 1,
    ) -> None:
        super().__init__()
        # Windows scored per point: 1 scores every window start; None: the training windows' data.stride.
        self.score_stride = None if stride is None else check_number("model.scorer.stride", stride, 1, integer=True)
        self.combine = check_choice("model.scorer.combine", combine, COMBINES)
        self.threshold = check_choice("model.scorer.threshold", threshold, THRESHOLDS)
        self.fallback = check_choice("model.scorer.fallback", fallback, UNSUPERVISED)
        self.beta = check_number("model.scorer.beta", beta, 0.0, low_open=True)
        self.k = check_number("model.scorer.k", k, 0.0)
        self.quantile = check_number("model.scorer.quantile", quantile, 0.0, 1.0)
        self.shrinkage = check_number("model.scorer.shrinkage", shrinkage, 0.0, 1.0)
        self.register_buffer("mu", torch.zeros(n_features))
        self.register_buffer("precision", torch.eye(n_features))
        self.register_buffer("tau", torch.tensor(float("inf")))
        self.register_buffer("shift", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.rule, self.window, self.stride, self.columns = "", 0, 0, []

    @property
    def fitted(self) -> bool:
        return bool(self.rule)

    def get_extra_state(self) -> dict[str, Any]:
        return {"rule": self.rule, "window": self.window, "stride": self.stride, "columns": list(self.columns)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.rule, self.window, self.stride = state["rule"], state["window"], state["stride"]
        self.columns = list(state["columns"])

    def set_input(self, shift: torch.Tensor, scale: torch.Tensor, window: int, stride: int, columns: list[str]) -> None:
        """The scaling and window the model was trained with, applied again to any data scored later, and
        the stride of the windows scored (``model.scorer.stride``, else the training windows' ``stride``)."""
        stride = self.score_stride or stride
        check_number("model.scorer.stride", stride, 1, window, integer=True)
        self.shift.copy_(shift)
        self.scale.copy_(scale)
        self.window, self.stride, self.columns = int(window), int(stride), list(columns)

    def fit_distribution(self, errors: torch.Tensor) -> None:
        """mu and Sigma^-1 from error vectors (M, F) of normal data (maximum likelihood: divide by M)."""
        errors = errors.double()
        mu = errors.mean(0)
        centred = errors - mu
        sigma = centred.T @ centred / len(errors)
        n = sigma.shape[0]
        level = torch.trace(sigma) / n
        level = level if level > 0 else torch.tensor(1.0, dtype=torch.float64)
        sigma = (1 - self.shrinkage) * sigma + (self.shrinkage * level + 1e-9 * level) * torch.eye(
            n, dtype=torch.float64
        )
        self.mu.copy_(mu)
        self.precision.copy_(torch.linalg.inv(sigma))

    def score(self, errors: torch.Tensor) -> torch.Tensor:
        """(..., F) error vectors -> (...) squared Mahalanobis distances."""
        centred = errors.to(self.mu.dtype) - self.mu
        return torch.einsum("...i,ij,...j->...", centred, self.precision, centred)

    def choose_threshold(self, normal_scores: torch.Tensor, labelled_scores: torch.Tensor, labels: torch.Tensor) -> str:
        """Set tau; returns (and keeps) the rule that chose it, in words.

        ``f_beta``: the tau that maximises F-beta on the labelled scores (vN2 + vA); where those hold no
        anomaly, or nothing normal, the ``fallback`` rule on the normal validation scores (vN1).
        """
        labels = labels.bool()
        rule = self.threshold
        if rule == "f_beta" and (labels.all() or not labels.any()):
            rule = self.fallback
            reason = "no anomalies" if not labels.any() else "no normal points"
            why = f" (f_beta had {reason} in the threshold split to learn from)"
        else:
            why = ""
        if rule == "f_beta":
            tau, value = best_f_beta_threshold(labelled_scores, labels, self.beta)
            n_segments = int((labels[1:] & ~labels[:-1]).sum() + labels[0])
            self.rule = (
                f"f_beta: tau maximises F{self.beta:g} = {value:.3f} on the threshold split "
                f"({len(labels)} points, {n_segments} anomalous segments)"
            )
        elif rule == "mean_std":
            tau = float(normal_scores.mean() + self.k * normal_scores.std())
            self.rule = f"mean_std: tau = mean + {self.k:g} std of the validation scores{why}"
        else:
            tau = float(torch.quantile(normal_scores.double(), self.quantile))
            self.rule = f"quantile: tau = the {self.quantile:g} quantile of the validation scores{why}"
        self.tau.fill_(tau)
        return self.rule

    def window_weights(self, scores: torch.Tensor) -> torch.Tensor:
        """(B, window) weight of each window's score of each of its points in those points' combined
        score (``combine`` = weighted or mean; max takes no weights)."""
        if self.combine == "weighted":
            # A window that holds an anomaly rebuilds its normal points badly too: the worse a window is
            # rebuilt as a whole, the less its word on any one point counts.
            return (1.0 / scores.mean(1, keepdim=True).clamp(min=1e-12)).expand_as(scores)
        return torch.ones_like(scores)

    def flags(self, scores: torch.Tensor) -> torch.Tensor:
        return scores > self.tau


def best_f_beta_threshold(scores: torch.Tensor, labels: torch.Tensor, beta: float) -> tuple[float, float]:
    """(tau, F-beta) where flagging ``scores > tau`` maximises F-beta against ``labels``."""
    top = scores.max().clamp(min=1e-12)
    # Scores divided by their maximum lie in [0, 1], where torchmetrics takes them as they are.
    precision, recall, thresholds = binary_precision_recall_curve(scores.double() / top, labels.long())
    precision, recall = precision[:-1], recall[:-1]
    f_beta = (1 + beta**2) * precision * recall / (beta**2 * precision + recall).clamp(min=1e-12)
    best = int(torch.argmax(f_beta))
    # torchmetrics flags scores >= threshold; the next lower score keeps the same flags with ">".
    at_or_above = thresholds[best] * top
    below = scores[scores.double() < at_or_above]
    tau = float(below.max()) if len(below) else float(at_or_above) - 1e-12
    return tau, float(f_beta[best])
