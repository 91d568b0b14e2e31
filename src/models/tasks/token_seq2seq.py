"""Token sequence to sequence: teacher-forced cross-entropy, scored on decoded sequences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import override

from src.data.batch import SeqBatch
from src.metrics.tokens import ExactMatch, TokenAccuracy
from src.models.tasks.base import CompileMode, SeqBatchTask
from src.models.tasks.contract import TokenData, TokenNet


def token_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, pad_id: int, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, T, V) against ``target`` (B, T), padding ignored.

    The softmax runs over the vocabulary, the last axis, and nothing else: the post's
    ``F.log_softmax(o)`` on a (T, B, V) tensor normalised over time instead (tests guard this).
    """
    if logits.dim() != 3 or logits.shape[:2] != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be (B, T, V) for a target of {tuple(target.shape)}")
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        target.reshape(-1),
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
    )


class TokenSeq2SeqTask(SeqBatchTask):
    """Trains a token net (``forward`` -> logits (B, T, V), ``decode`` -> tokens) on ``SeqBatch`` token data.

    ``loss`` is the teacher-forced cross-entropy (train: teacher forcing at ``teacher_forcing``;
    val/test: fully teacher-forced). ``token_accuracy`` and ``exact_match`` score what the net
    *decodes* on its own (greedy, or beam search with ``beam_size`` > 1), as a user would see it.
    """

    metrics_in_progress_bar = True
    batch_kind = "tokens"
    net_contract, data_contract = TokenNet, TokenData
    shared_sizes = ("vocab_size", "pad_id", "bos_id", "eos_id")

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        label_smoothing: float = 0.0,
        teacher_forcing: float = 1.0,
        beam_size: int = 1,
        gradient_clip: float | None = 1.0,
        monitor: str = "val/loss",
        steps_per_execution: int = 1,
        compile: bool | CompileMode = False,
    ) -> None:
        super().__init__(net, optimizer, scheduler, steps_per_execution, compile)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing={label_smoothing} must lie in [0, 1)")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"model.teacher_forcing={teacher_forcing} must lie in [0, 1]")
        if int(beam_size) < 1:
            raise ValueError(f"model.beam_size={beam_size} must be >= 1")
        # Recurrent nets need clipping to train at lr ~3e-3; SeqBatchTask.configure_gradient_clipping applies it.
        if gradient_clip is not None and gradient_clip <= 0:
            raise ValueError(f"model.gradient_clip={gradient_clip} must be > 0 or null")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.pad_id = int(net.pad_id)
        self.set_metrics({"token_accuracy": TokenAccuracy(self.pad_id), "exact_match": ExactMatch(self.pad_id)})

    @override
    def forward(self, batch: SeqBatch, teacher_forcing: float = 1.0) -> torch.Tensor:
        return self.net(batch.src, batch.src_lengths, batch.tgt, teacher_forcing=teacher_forcing)

    def decode(self, batch: SeqBatch) -> torch.Tensor:
        """Decoded tokens (B, T) for the batch's targets: at most T steps, since no longer output can match."""
        return self.net.decode(batch.src, batch.src_lengths, batch.tgt.shape[1], int(self.hparams.beam_size)).tokens

    def _shared_step(self, batch: SeqBatch, stage: str) -> torch.Tensor:
        logits = self(batch, self.hparams.teacher_forcing if stage == "train" else 1.0)
        smoothing = self.hparams.label_smoothing if stage == "train" else 0.0
        loss = token_cross_entropy(logits, batch.tgt, self.pad_id, smoothing)
        if stage == "train":
            self.check_finite(loss, "lower model.optimizer.lr or set model.gradient_clip")
        self.log_loss(loss, stage, batch.size)
        if stage != "train":
            metrics = self.metrics[stage]
            decoded = self.decode(batch)
            metrics["token_accuracy"].update(decoded, batch.tgt)
            metrics["exact_match"].update(decoded, batch.tgt)
        return loss

    @override
    def predict_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        return self.decode(batch)
