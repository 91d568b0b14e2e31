"""Variable-length data: sine bursts of random length, reconstructed, zero-padded to ``max_length``.

``src_lengths = tgt_lengths`` hold each burst's true length; the task masks the loss by
``tgt_lengths`` and the encoders stop at ``src_lengths``, so padding reaches neither.
"""

from __future__ import annotations

import torch

from src.data.batch import SeqBatch
from src.data.module import SequenceDataModule
from src.data.sine import check_sine_keys, sine_waves
from src.masks import length_mask


class SineBurstsDataModule(SequenceDataModule):
    """(B, max_length, F) bursts of ``min_length..max_length`` valid steps, padded with ``pad_value``."""

    def __init__(
        self,
        n_features: int = 2,
        min_length: int = 8,
        max_length: int = 24,
        pad_value: float = 0.0,
        freq_low: float = 0.03,
        freq_high: float = 0.12,
        amp_low: float = 0.5,
        amp_high: float = 1.0,
        noise_std: float = 0.05,
        n_train: int = 1000,
        n_val: int = 100,
        n_test: int = 100,
        batch_size: int = 32,
        eval_batch_size: int = 256,
        seed: int = 0,
        on_device: bool = False,
        target_length: int | None = None,
    ) -> None:
        super().__init__(n_train, n_val, n_test, batch_size, seed, eval_batch_size, on_device)
        check_sine_keys(n_features, freq_low, freq_high, amp_low, amp_high, noise_std)
        if not 1 <= min_length <= max_length:
            raise ValueError(
                f"data.min_length={min_length} and data.max_length={max_length} must satisfy 1 <= min <= max"
            )
        self.n_features, self.min_length, self.max_length = int(n_features), int(min_length), int(max_length)
        self.pad_value = float(pad_value)
        self.freq_range, self.amp_range, self.noise_std = (freq_low, freq_high), (amp_low, amp_high), float(noise_std)
        self.tgt_offset = 0
        self.target_length = self.max_length
        self.check_declared("target_length", target_length, self.max_length)

    def generate(self, n: int, generator: torch.Generator) -> SeqBatch:
        x = sine_waves(n, self.max_length, self.n_features, generator, self.freq_range, self.amp_range, self.noise_std)
        lengths = torch.randint(self.min_length, self.max_length + 1, (n,), generator=generator)
        x = torch.where(length_mask(lengths, self.max_length).unsqueeze(-1), x, torch.full_like(x, self.pad_value))
        return SeqBatch(src=x, src_lengths=lengths, tgt=x.clone(), tgt_lengths=lengths.clone())
