"""Linear ramps, reconstructed: the Keras tutorial's ``[0.1, 0.2, ..., 0.9]`` and random ramps.

The tutorial's single sequence is the degenerate case ``start_low = start_high = 0.1``,
``step_low = step_high = 0.1``; wider ranges give random start and slope per example.
"""

from __future__ import annotations

import torch

from src.data.batch import SeqBatch
from src.data.module import SequenceDataModule


def ramps(starts: torch.Tensor, steps: torch.Tensor, length: int) -> torch.Tensor:
    """(N,) starts and (N,) slopes -> (N, length) ramps ``start + step * t``."""
    return starts[:, None] + steps[:, None] * torch.arange(length, dtype=torch.float32)[None, :]


class RampDataModule(SequenceDataModule):
    """Reconstruction (``tgt = src``) of (B, length, 1) linear ramps."""

    def __init__(
        self,
        length: int = 9,
        start_low: float = 0.1,
        start_high: float = 0.1,
        step_low: float = 0.1,
        step_high: float = 0.1,
        n_train: int = 1,
        n_val: int = 1,
        n_test: int = 1,
        batch_size: int = 1,
        eval_batch_size: int = 256,
        seed: int = 0,
        on_device: bool = False,
        n_features: int | None = None,
        target_length: int | None = None,
    ) -> None:
        super().__init__(n_train, n_val, n_test, batch_size, seed, eval_batch_size, on_device)
        if length < 2:
            raise ValueError(f"data.length={length} must be >= 2")
        if start_low > start_high:
            raise ValueError(f"data.start_low={start_low} must be <= data.start_high={start_high}")
        if step_low > step_high:
            raise ValueError(f"data.step_low={step_low} must be <= data.step_high={step_high}")
        self.length = int(length)
        self.start_range, self.step_range = (float(start_low), float(start_high)), (float(step_low), float(step_high))
        self.tgt_offset = 0
        self.n_features, self.target_length = 1, self.length
        self.check_declared("n_features", n_features, 1)
        self.check_declared("target_length", target_length, self.length)

    def generate(self, n: int, generator: torch.Generator) -> SeqBatch:
        (s0, s1), (d0, d1) = self.start_range, self.step_range
        starts = s0 + (s1 - s0) * torch.rand(n, generator=generator)
        steps = d0 + (d1 - d0) * torch.rand(n, generator=generator)
        x = ramps(starts, steps, self.length).unsqueeze(-1)
        lengths = torch.full((n,), self.length, dtype=torch.long)
        return SeqBatch(src=x, src_lengths=lengths, tgt=x.clone(), tgt_lengths=lengths.clone())
