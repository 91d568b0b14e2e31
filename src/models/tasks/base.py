"""What every task of the lab shares: optimizer wiring, batch transfer, one step for train/val/test."""
from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl
import torch

from src.data.batch import SeqBatch


class SeqBatchTask(pl.LightningModule):
    """Base of the LightningModules that train a net on ``SeqBatch`` data.

    Subclasses implement ``_shared_step(batch, stage)`` for ``train``, ``val`` and ``test`` and
    keep ``monitor`` (the metric a scheduler such as ReduceLROnPlateau watches) in their
    hyper-parameters. The optimizer and scheduler factories are partials: they are kept out of the
    checkpoint's hyper-parameters so that checkpoints load with torch's safe weights-only unpickler.
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    def _shared_step(self, batch: SeqBatch, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def check_finite(self, loss: torch.Tensor, advice: str) -> None:
        """Stop at the first non-finite training loss, saying where and what to change."""
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"train/loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}: {advice}"
            )

    def transfer_batch_to_device(self, batch: SeqBatch, device: torch.device, dataloader_idx: int) -> SeqBatch:
        # Lightning's generic collection walk costs a noticeable share of a step this small.
        return batch.to(device)

    def training_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.hparams.monitor, "interval": "epoch"},
        }
