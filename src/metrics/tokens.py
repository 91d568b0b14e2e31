"""Token accuracy and sequence exact match of decoded token sequences."""

from __future__ import annotations

import torch
from torchmetrics import Metric


def align(preds: torch.Tensor, target: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``preds`` (B, L) padded or cut with ``pad_id`` to the target's width (B, T)."""
    width = target.shape[1]
    if preds.shape[1] >= width:
        return preds[:, :width]
    return torch.cat([preds, preds.new_full((preds.shape[0], width - preds.shape[1]), pad_id)], dim=1)


class DecodedTokenMetric(Metric):
    """``correct / total`` over an epoch of decoded sequences; subclasses count both in ``update``."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, pad_id: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pad_id = pad_id
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp(min=1).float()


class TokenAccuracy(DecodedTokenMetric):
    """Fraction of target positions (eos included, padding excluded) where the decoded token is right."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != self.pad_id
        self.correct += ((align(preds, target, self.pad_id) == target) & valid).sum()
        self.total += valid.sum()


class ExactMatch(DecodedTokenMetric):
    """Fraction of sequences decoded exactly: every token up to and including eos, and nothing after.

    A prediction longer than the target row (no eos where the target has one) counts as wrong.
    """

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        aligned = align(preds, target, self.pad_id)
        overflow = torch.zeros(target.shape[0], dtype=torch.bool, device=target.device)
        if preds.shape[1] > target.shape[1]:
            overflow = (preds[:, target.shape[1] :] != self.pad_id).any(dim=1)
        self.correct += ((aligned == target).all(dim=1) & ~overflow).sum()
        self.total += target.shape[0]
