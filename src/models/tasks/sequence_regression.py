"""Real-valued sequence to sequence: reconstruction or continuation, scored against the mean."""
from __future__ import annotations

import inspect
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from src.data.batch import SeqBatch, length_mask
from src.metrics.skill import SkillScore

LOSSES = {"mse": lambda p, t: (p - t) ** 2, "l1": lambda p, t: (p - t).abs()}
STAGES = ("train", "val", "test")


def check_net_fits_data(net: nn.Module, datamodule: Any) -> None:
    """Shapes a net was built for (``model.net.n_features``/``target_length``, normally interpolated
    from ``data``) must be what the data makes; an override of one side fails here, before any step."""
    datamodule.setup()
    tgt = datamodule.splits["train"].tgt
    for key, actual in (("n_features", tgt.shape[-1]), ("target_length", tgt.shape[1])):
        declared = getattr(net, key, None)
        if tgt.dim() == 3 and declared is not None and int(declared) != actual:
            raise ValueError(
                f"model.net.{key}={declared} but data.{key}={actual} (what the data makes); "
                f"leave model.net.{key} at its default ${{data.{key}}}"
            )


class SequenceRegressionTask(pl.LightningModule):
    """Trains a net mapping ``src`` (B, S, F) to a prediction shaped like ``tgt`` (B, T, F).

    Loss is MSE or L1 over valid target positions only. Val/test log ``mse``, ``mae`` and
    ``skill`` (1 - MSE / MSE of the per-position training mean, see ``SkillScore``).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        loss: str = "mse",
        teacher_forcing: float = 0.0,
        monitor: str = "val/loss",
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"model.loss={loss!r} is not one of {tuple(LOSSES)}")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"model.teacher_forcing={teacher_forcing} must lie in [0, 1]")
        # The optimizer and scheduler factories are partials: kept out of the checkpoint's
        # hyper-parameters so that checkpoints load with torch's safe weights-only unpickler.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.elementwise_loss = LOSSES[loss]
        self.teacher_forcing = teacher_forcing
        # Nets that decode within each target's own length (EncDec-AD's reversal) declare a
        # ``tgt_lengths`` argument; the others keep the four-argument contract.
        self._pass_tgt_lengths = "tgt_lengths" in inspect.signature(net.forward).parameters
        self.metrics = nn.ModuleDict(
            {
                stage: MetricCollection(
                    {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "skill": SkillScore(torch.zeros(1, 1))},
                    prefix=f"{stage}/",
                )
                for stage in ("val", "test")
            }
        )

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "target_mean"):
            raise ValueError("the skill score needs a datamodule with target_mean(); check the `data` config")
        check_net_fits_data(self.net, datamodule)
        baseline = datamodule.target_mean()
        for collection in self.metrics.values():
            collection["skill"].set_baseline(baseline)

    def transfer_batch_to_device(self, batch: SeqBatch, device: torch.device, dataloader_idx: int) -> SeqBatch:
        # Lightning's generic collection walk costs a noticeable share of a step this small.
        return batch.to(device)

    def forward(self, batch: SeqBatch, teacher_forcing: float = 0.0) -> torch.Tensor:
        if self._pass_tgt_lengths:
            return self.net(
                batch.src, batch.src_lengths, batch.tgt, teacher_forcing=teacher_forcing, tgt_lengths=batch.tgt_lengths
            )
        return self.net(batch.src, batch.src_lengths, batch.tgt, teacher_forcing=teacher_forcing)

    def _shared_step(self, batch: SeqBatch, stage: str) -> torch.Tensor:
        pred = self(batch, self.teacher_forcing if stage == "train" else 0.0)
        mask = length_mask(batch.tgt_lengths, batch.tgt.shape[1])
        weight = mask.unsqueeze(-1).to(pred.dtype)
        loss = (self.elementwise_loss(pred, batch.tgt) * weight).sum() / (weight.sum() * pred.shape[-1])
        if stage == "train" and not torch.isfinite(loss):
            raise FloatingPointError(
                f"train/loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}: "
                "lower model.optimizer.lr or check the data config"
            )
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True, batch_size=len(pred))
        if stage != "train":
            metrics = self.metrics[stage]
            valid_pred, valid_tgt = pred.float()[mask], batch.tgt[mask]
            metrics["mse"].update(valid_pred, valid_tgt)
            metrics["mae"].update(valid_pred, valid_tgt)
            metrics["skill"].update(pred, batch.tgt, mask)
            self.log_dict(metrics, on_epoch=True, batch_size=len(pred))
        return loss

    def training_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: SeqBatch, batch_idx: int) -> torch.Tensor:
        return self(batch)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.hparams.monitor, "interval": "epoch"},
        }
