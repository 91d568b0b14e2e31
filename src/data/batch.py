"""The batch contract shared by every dataset and every task (docs/design.md)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class SeqBatch(NamedTuple):
    """Source and target sequences with their true lengths.

    Real-valued data: ``src`` (B, S, F) and ``tgt`` (B, T, F) float32.
    Token data: ``src`` (B, S) and ``tgt`` (B, T) int64, padded.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt: torch.Tensor
    tgt_lengths: torch.Tensor

    def index(self, idx: torch.Tensor | slice) -> SeqBatch:
        """Cut the examples at ``idx`` out of every field at once."""
        return SeqBatch(*(t[idx] for t in self))

    def trimmed(self) -> SeqBatch:
        """The batch cut to its longest source and target: padding no sequence reaches is dropped."""
        src_len, tgt_len = int(self.src_lengths.max()), int(self.tgt_lengths.max())
        return SeqBatch(self.src[:, :src_len], self.src_lengths, self.tgt[:, :tgt_len], self.tgt_lengths)

    def to(self, device: torch.device | str) -> SeqBatch:
        return SeqBatch(*(t.to(device, non_blocking=True) for t in self))

    @property
    def size(self) -> int:
        return self.src.shape[0]
