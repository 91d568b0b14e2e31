"""Synthetic multi-sensor series with labelled anomalies of six kinds.

Each channel mixes a few shared periodic sources (so the channels are correlated), plus a trend,
a channel's own slow wave and noise. Anomalies are injected into the threshold and test series;
most kinds stay inside the normal range of values, so that only a model of the normal dynamics,
not a range check, finds them.
"""

from __future__ import annotations

import math

import torch

from src.checks import check_number
from src.data.series import LabelledSeries, SeriesDataModule

KINDS = ("spike", "level_shift", "frequency", "noise_burst", "flat_line", "decorrelation")


def uniform(generator: torch.Generator, low: float, high: float, *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


class SensorSystem:
    """The fixed, normal dynamics: periods, mixing weights, trends and noise of every channel."""

    def __init__(self, n_features: int, n_sources: int, noise_std: float, generator: torch.Generator) -> None:
        self.periods = uniform(generator, 20.0, 80.0, n_sources)
        self.phases = uniform(generator, 0.0, 2 * math.pi, n_sources)
        self.mixing = torch.randn(n_features, n_sources, generator=generator) / math.sqrt(n_sources)
        self.own_periods = uniform(generator, 150.0, 400.0, n_features)
        self.trend = uniform(generator, -0.2, 0.2, n_features) / 10_000
        self.noise_std = noise_std

    def sources(self, t: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
        """(N, n_sources) waves; ``speed`` (N, n_sources) scales each source's frequency per step, so
        that a changed frequency keeps the phase continuous."""
        phase = self.phases + 2 * math.pi * torch.cumsum(speed / self.periods, 0) + 2 * math.pi * t[0] / self.periods
        return torch.sin(phase)

    def channels(self, sources: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        own = 0.3 * torch.sin(2 * math.pi * t[:, None] / self.own_periods)
        return sources @ self.mixing.T + own + self.trend * t[:, None]

    def series(self, t0: int, length: int, n_anomalies: int, generator: torch.Generator, name: str) -> LabelledSeries:
        """``length`` points from time ``t0``, with ``n_anomalies`` anomalies cycling through ``KINDS``."""
        t = torch.arange(t0, t0 + length, dtype=torch.float32)
        speed = torch.ones(length, len(self.periods))
        labels = torch.zeros(length, dtype=torch.bool)
        segments = place_segments(length, n_anomalies, generator)
        for (start, end), kind in zip(segments, (KINDS[i % len(KINDS)] for i in range(n_anomalies))):
            if kind == "frequency":
                source = int(torch.randint(len(self.periods), (1,), generator=generator))
                speed[start:end, source] = 2.5
        values = self.channels(self.sources(t, speed), t)
        values = values + self.noise_std * torch.randn(values.shape, generator=generator)
        std = values.std(0)
        for (start, end), kind in zip(segments, (KINDS[i % len(KINDS)] for i in range(n_anomalies))):
            channel = int(torch.randint(values.shape[1], (1,), generator=generator))
            sign = 1.0 if torch.rand(1, generator=generator) < 0.5 else -1.0
            segment = values[start:end, channel]
            if kind == "spike":
                end = start + 3
                values[start:end, channel] += sign * 3.0 * std[channel]
            elif kind == "level_shift":
                segment += sign * 2.0 * std[channel]
            elif kind == "noise_burst":
                segment += 1.0 * std[channel] * torch.randn(end - start, generator=generator)
            elif kind == "flat_line":
                segment[:] = segment[0]
            elif kind == "decorrelation":
                # The channel's own pattern, half a period of its first source late: in range, out of step.
                lag = int(self.periods[0] / 2)
                shifted = self.channels(self.sources(t[start:end] - lag, speed[start:end]), t[start:end] - lag)
                segment[:] = shifted[:, channel] + self.noise_std * torch.randn(end - start, generator=generator)
            labels[start:end] = True
        return LabelledSeries(values, labels, name)


def place_segments(length: int, n: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """``n`` non-overlapping segments of 20-50 points, one in each of ``n`` equal slots of the series."""
    if n == 0:
        return []
    slot = length // n
    segments = []
    for i in range(n):
        size = int(torch.randint(20, 51, (1,), generator=generator))
        start = i * slot + int(
            torch.randint(slot // 4, max(slot - size - slot // 4, slot // 4 + 1), (1,), generator=generator)
        )
        segments.append((start, start + size))
    return segments


class SyntheticAnomalyDataModule(SeriesDataModule):
    """A normal series to train on, then a threshold and a test series with injected anomalies, one
    after the other in time, all from one ``SensorSystem``."""

    def __init__(
        self,
        n_features: int = 4,
        n_sources: int = 3,
        noise_std: float = 0.05,
        train_length: int = 8000,
        threshold_length: int = 3000,
        test_length: int = 5000,
        anomalies_per_series: int = 12,
        window: int = 16,
        stride: int = 4,
        scaling: str = "standard",
        val_fraction: float = 0.2,
        batch_size: int = 32,
        eval_batch_size: int = 256,
        seed: int = 0,
        on_device: bool = False,
        target_length: int | None = None,
    ) -> None:
        super().__init__(window, stride, scaling, val_fraction, 0.0, 0.0, batch_size, eval_batch_size, seed, on_device)
        self.n_features = check_number("data.n_features", n_features, 1, integer=True)
        self.n_sources = check_number("data.n_sources", n_sources, 1, integer=True)
        self.noise_std = check_number("data.noise_std", noise_std, 0.0)
        self.lengths = {
            name: check_number(f"data.{name}_length", value, self.window, integer=True)
            for name, value in (("train", train_length), ("threshold", threshold_length), ("test", test_length))
        }
        self.anomalies = check_number("data.anomalies_per_series", anomalies_per_series, 1, integer=True)
        for name in ("threshold", "test"):
            room = self.lengths[name] // self.anomalies
            if room < 2 * 50:
                raise ValueError(
                    f"data.{name}_length={self.lengths[name]} is too short for "
                    f"data.anomalies_per_series={self.anomalies} (each needs 100 points)"
                )
        self.check_declared("target_length", target_length, self.window)

    def load(self) -> dict[str, LabelledSeries]:
        generator = torch.Generator().manual_seed(self.seed)
        self.columns = [f"sensor_{i}" for i in range(self.n_features)]
        system = SensorSystem(self.n_features, self.n_sources, self.noise_std, generator)
        t0, out = 0, {}
        for name in ("train", "threshold", "test"):
            n_anomalies = 0 if name == "train" else self.anomalies
            out[name] = system.series(t0, self.lengths[name], n_anomalies, generator, f"data=anomaly {name} series")
            t0 += self.lengths[name]
        return out
