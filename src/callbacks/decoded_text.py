"""Decoded samples as text, the post's ``S: T: P:`` print, in TensorBoard's Text tab."""
from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

log = logging.getLogger(__name__)


def format_samples(src: torch.Tensor, tgt: torch.Tensor, pred: torch.Tensor, decode) -> str:
    """Markdown with one block per example: ``S:`` source, ``T:`` target, ``P:`` prediction (``ok``/``WRONG``)."""
    blocks = []
    for s, t, p in zip(src, tgt, pred):
        target, prediction = decode(t), decode(p)
        verdict = "ok" if target == prediction else "WRONG"
        blocks.append(f"    S: {decode(s)}\n    T: {target}\n    P: {prediction}   [{verdict}]")
    return "\n\n".join(blocks)


class DecodedText(pl.Callback):
    """Every ``every_n_epochs`` epochs, logs ``val/decoded``: ``n_examples`` fixed validation
    examples decoded as the task decodes them at validation (greedy or beam)."""

    def __init__(self, every_n_epochs: int = 5, n_examples: int = 8, tag: str = "val/decoded") -> None:
        if every_n_epochs < 1 or n_examples < 1:
            raise ValueError(
                f"callbacks.decoded_text.every_n_epochs={every_n_epochs} and n_examples={n_examples} must be >= 1"
            )
        self.every_n_epochs, self.n_examples, self.tag = every_n_epochs, n_examples, tag
        self._skipped = False

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        datamodule = trainer.datamodule
        writer = next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if writer is None or not hasattr(pl_module, "decode") or not hasattr(datamodule, "decode"):
            if not self._skipped:
                log.info("DecodedText skipped: needs token data, a token task and a TensorBoard logger")
                self._skipped = True
            return
        batch = datamodule.splits["val"].index(slice(0, self.n_examples))
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            pred = pl_module.decode(type(batch)(*(t.to(pl_module.device) for t in batch))).cpu()
        pl_module.train(was_training)
        writer.add_text(self.tag, format_samples(batch.src, batch.tgt, pred, datamodule.decode), trainer.global_step)
