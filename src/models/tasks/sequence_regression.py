"""Real-valued sequence to sequence: reconstruction or continuation, scored against the mean."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError
from typing_extensions import override

from src.checks import check_number
from src.data.batch import SeqBatch
from src.masks import length_mask
from src.metrics.skill import SkillScore
from src.models.tasks.base import CompileMode, SeqBatchTask
from src.models.tasks.contract import RealValuedData, RealValuedNet

LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss}


class SequenceRegressionTask(SeqBatchTask):
    """Trains a net mapping ``src`` (B, S, F) to a prediction shaped like ``tgt`` (B, T, F).

    The net is called as ``net(src, src_lengths, tgt, teacher_forcing=..., tgt_lengths=...)``; nets
    that need no per-target lengths ignore the last. Loss is MSE or L1 over valid target positions
    only. Val/test log ``mse``, ``mae`` and ``skill`` (1 - MSE / MSE of the per-position training
    mean, see ``SkillScore``).
    """

    batch_kind = "real"
    net_contract, data_contract = RealValuedNet, RealValuedData
    shared_sizes = ("n_features", "target_length")

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        loss: str = "mse",
        teacher_forcing: float = 0.0,
        monitor: str = "val/loss",
        gradient_clip: float | None = None,
        steps_per_execution: int = 1,
        compile: bool | CompileMode = False,
    ) -> None:
        super().__init__(net, optimizer, scheduler, steps_per_execution, compile)
        if gradient_clip is not None:
            check_number("model.gradient_clip", gradient_clip, 0.0)
        if loss not in LOSSES:
            raise ValueError(f"model.loss={loss!r} is not one of {tuple(LOSSES)}")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"model.teacher_forcing={teacher_forcing} must lie in [0, 1]")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.loss_fn = LOSSES[loss]
        self.targets_padded = True
        self.teacher_forcing = teacher_forcing
        self.set_metrics(
            {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "skill": SkillScore(torch.zeros(1, 1))}
        )

    @override
    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = self.trainer.datamodule
        # Where every target runs its full length the loss needs no mask: a third of a small step.
        self.targets_padded = datamodule.targets_padded()
        baseline = datamodule.target_mean()
        for collection in self.metrics.values():
            collection["skill"].set_baseline(baseline)

    @override
    def forward(self, batch: SeqBatch, teacher_forcing: float = 0.0) -> torch.Tensor:
        return self.net(
            batch.src, batch.src_lengths, batch.tgt, teacher_forcing=teacher_forcing, tgt_lengths=batch.tgt_lengths
        )

    def loss(self, pred: torch.Tensor, batch: SeqBatch) -> torch.Tensor:
        """Mean loss over the valid target positions, in float32 whatever the precision."""
        pred, tgt = pred.float(), batch.tgt.float()
        if not self.targets_padded:
            return self.loss_fn(pred, tgt)
        weight = length_mask(batch.tgt_lengths, tgt.shape[1]).unsqueeze(-1).float()
        return (self.loss_fn(pred, tgt, reduction="none") * weight).sum() / (weight.sum() * tgt.shape[-1])

    def _shared_step(self, batch: SeqBatch, stage: str) -> torch.Tensor:
        pred = self(batch, self.teacher_forcing if stage == "train" else 0.0)
        loss = self.loss(pred, batch)
        if stage == "train":
            self.check_finite(loss, "lower model.optimizer.lr or check the data config")
        self.log_loss(loss, stage, len(pred))
        if stage != "train":
            mask = length_mask(batch.tgt_lengths, batch.tgt.shape[1])
            metrics = self.metrics[stage]
            valid_pred, valid_tgt = pred.float()[mask], batch.tgt[mask]
            metrics["mse"].update(valid_pred, valid_tgt)
            metrics["mae"].update(valid_pred, valid_tgt)
            metrics["skill"].update(pred, batch.tgt, mask)
        return loss

    @override
    def predict_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        return self(batch)
