"""Multivariate noisy sine waves: reconstruct the window, or forecast its end from its start.

Every channel of every example draws its own frequency (cycles per step), phase and amplitude.
"""

from __future__ import annotations

import math

import torch

from src.data.batch import SeqBatch
from src.data.module import SequenceDataModule

MODES = ("reconstruct", "forecast")


def sine_waves(
    n: int,
    length: int,
    n_features: int,
    generator: torch.Generator,
    freq_range: tuple[float, float] = (0.02, 0.1),
    amp_range: tuple[float, float] = (0.5, 1.0),
    noise_std: float = 0.05,
) -> torch.Tensor:
    """(n, length, n_features): ``amp * sin(2 pi freq t + phase) + N(0, noise_std^2)``."""
    shape = (n, 1, n_features)
    uniform = lambda lo, hi: lo + (hi - lo) * torch.rand(shape, generator=generator)  # noqa: E731
    freq, amp = uniform(*freq_range), uniform(*amp_range)
    phase = uniform(0.0, 2 * math.pi)
    t = torch.arange(length, dtype=torch.float32).view(1, -1, 1)
    noise = noise_std * torch.randn(n, length, n_features, generator=generator)
    return amp * torch.sin(2 * math.pi * freq * t + phase) + noise


def check_sine_keys(
    n_features: int, freq_low: float, freq_high: float, amp_low: float, amp_high: float, noise_std: float
) -> None:
    """Range checks shared by the fixed- and variable-length sine datasets."""
    if n_features < 1:
        raise ValueError(f"data.n_features={n_features} must be >= 1")
    if not 0 < freq_low <= freq_high <= 0.5:
        raise ValueError(f"data.freq_low={freq_low} and data.freq_high={freq_high} must satisfy 0 < low <= high <= 0.5")
    if not 0 <= amp_low <= amp_high:
        raise ValueError(f"data.amp_low={amp_low} and data.amp_high={amp_high} must satisfy 0 <= low <= high")
    if noise_std < 0:
        raise ValueError(f"data.noise_std={noise_std} must be >= 0")


class SineDataModule(SequenceDataModule):
    """``mode=reconstruct``: src = tgt = the ``length``-step window. ``mode=forecast``: src = its first
    ``length - horizon`` steps, tgt = the last ``horizon``."""

    def __init__(
        self,
        n_features: int = 3,
        length: int = 16,
        mode: str = "reconstruct",
        horizon: int = 8,
        freq_low: float = 0.02,
        freq_high: float = 0.08,
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
        if mode not in MODES:
            raise ValueError(f"data.mode={mode!r} is not one of {MODES}")
        check_sine_keys(n_features, freq_low, freq_high, amp_low, amp_high, noise_std)
        if length < 2:
            raise ValueError(f"data.length={length} must be >= 2")
        if mode == "forecast" and not 1 <= horizon < length:
            raise ValueError(f"data.horizon={horizon} must lie in [1, data.length={length}) for data.mode=forecast")
        self.n_features, self.length, self.mode, self.horizon = int(n_features), int(length), mode, int(horizon)
        self.freq_range, self.amp_range, self.noise_std = (freq_low, freq_high), (amp_low, amp_high), float(noise_std)
        forecast = mode == "forecast"
        self.tgt_offset = self.length - self.horizon if forecast else 0
        made = self.horizon if forecast else self.length
        self.target_length = made
        if target_length is not None and int(target_length) != made:
            # The usual cause: data.mode=forecast on data=sine, whose target_length follows data.length.
            raise ValueError(
                f"data.target_length={target_length} but data.mode={mode} makes {made}-step targets "
                f"(reconstruct: data.length, forecast: data.horizon); use data=sine_forecast for forecasting"
            )

    def generate(self, n: int, generator: torch.Generator) -> SeqBatch:
        x = sine_waves(n, self.length, self.n_features, generator, self.freq_range, self.amp_range, self.noise_std)
        if self.mode == "reconstruct":
            src, tgt = x, x.clone()
        else:
            src, tgt = x[:, : self.length - self.horizon].contiguous(), x[:, self.length - self.horizon :].contiguous()
        return SeqBatch(
            src=src,
            src_lengths=torch.full((n,), src.shape[1], dtype=torch.long),
            tgt=tgt,
            tgt_lengths=torch.full((n,), tgt.shape[1], dtype=torch.long),
        )
