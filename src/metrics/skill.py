"""Skill against the unconditional baseline: did the model learn more than the mean?"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class SkillScore(Metric):
    """``1 - MSE(model) / MSE(baseline)``, where the baseline predicts, at every target position,
    that position's mean over the training set (``baseline``, shaped (T, F)).

    0 means the model learned only the mean (the Flux failure); 1 is perfect. Squared errors are
    summed over the whole epoch before the ratio is taken, and positions outside ``mask`` count
    for neither term.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, baseline: torch.Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("baseline", baseline.detach().float().clone(), persistent=False)
        self.add_state("model_sse", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("baseline_sse", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def set_baseline(self, baseline: torch.Tensor) -> None:
        self.baseline = baseline.detach().to(self.baseline.device, torch.float32).clone()

    def update(self, preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        steps = target.shape[1]
        if steps > self.baseline.shape[0]:
            raise ValueError(f"target length {steps} exceeds the skill baseline's {self.baseline.shape[0]} steps")
        baseline = self.baseline[:steps].unsqueeze(0).expand_as(target)
        weight = torch.ones_like(target) if mask is None else mask.view(*mask.shape, 1).expand_as(target).to(target)
        self.model_sse += ((preds.float() - target) ** 2 * weight).sum().double()
        self.baseline_sse += ((baseline - target) ** 2 * weight).sum().double()

    def compute(self) -> torch.Tensor:
        return (1.0 - self.model_sse / self.baseline_sse.clamp(min=1e-12)).float()
