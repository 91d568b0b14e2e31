"""Decoded samples as text, the post's ``S: T: P:`` print, in TensorBoard's Text tab."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from src.callbacks.snapshot import ValidationSnapshot
from src.data.batch import SeqBatch
from src.models.tasks.token_seq2seq import TokenSeq2SeqTask


def format_samples(src: torch.Tensor, tgt: torch.Tensor, pred: torch.Tensor, decode) -> str:
    """Markdown with one block per example: ``S:`` source, ``T:`` target, ``P:`` prediction (``ok``/``WRONG``)."""
    blocks = []
    for s, t, p in zip(src, tgt, pred):
        target, prediction = decode(t), decode(p)
        verdict = "ok" if target == prediction else "WRONG"
        blocks.append(f"    S: {decode(s)}\n    T: {target}\n    P: {prediction}   [{verdict}]")
    return "\n\n".join(blocks)


class DecodedText(ValidationSnapshot):
    """Every ``every_n_epochs`` epochs, logs ``val/decoded``: ``n_examples`` fixed validation
    examples decoded as the task decodes them at validation (greedy or beam)."""

    config_key = "callbacks.decoded_text"

    def __init__(self, every_n_epochs: int = 5, n_examples: int = 8, tag: str = "val/decoded") -> None:
        super().__init__(every_n_epochs, n_examples, tag)

    def skip_reason(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch) -> str | None:
        if not isinstance(pl_module, TokenSeq2SeqTask):
            return "needs a token task (model=seq2seq and its variants)"
        return None

    def snapshot(self, writer, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch) -> None:
        pred = pl_module.decode(batch).cpu()
        batch = batch.to("cpu")
        writer.add_text(
            self.tag, format_samples(batch.src, batch.tgt, pred, trainer.datamodule.decode), trainer.global_step
        )
