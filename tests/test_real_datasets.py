"""The real-valued datasets: ramp, sine (reconstruct / forecast), sine bursts (variable length)."""

from __future__ import annotations

import pytest
import torch

from src.data.ramp import RampDataModule
from src.data.sine import SineDataModule
from src.data.sine_bursts import SineBurstsDataModule


def test_ramp_default_is_the_keras_tutorial_sequence() -> None:
    dm = RampDataModule()
    dm.setup()
    for split in ("train", "val", "test"):
        batch = dm.splits[split]
        expected = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]).view(1, 9, 1)
        torch.testing.assert_close(batch.src, expected)
        assert torch.equal(batch.tgt, batch.src) and batch.src_lengths.tolist() == [9]


def test_random_ramps_are_linear_within_their_ranges() -> None:
    dm = RampDataModule(start_low=-0.5, start_high=0.5, step_low=-0.1, step_high=0.1, n_train=200, n_val=5, n_test=5)
    dm.setup()
    x = dm.splits["train"].src[..., 0]
    steps = x.diff(dim=1)
    torch.testing.assert_close(steps, steps[:, :1].expand_as(steps))
    assert (x[:, 0].abs() <= 0.5).all() and (steps.abs() <= 0.1 + 1e-6).all()
    assert x[:, 0].std() > 0.1 and steps[:, 0].std() > 0.02  # really random


def test_sine_reconstruct_and_forecast_cut_the_same_window() -> None:
    kwargs = dict(n_features=3, length=16, horizon=5, n_train=10, n_val=2, n_test=2, seed=4)
    rec, fc = SineDataModule(mode="reconstruct", **kwargs), SineDataModule(mode="forecast", **kwargs)
    rec.setup(), fc.setup()
    window, src, tgt = rec.splits["train"].src, fc.splits["train"].src, fc.splits["train"].tgt
    assert window.shape == (10, 16, 3) and torch.equal(rec.splits["train"].tgt, window)
    assert src.shape == (10, 11, 3) and tgt.shape == (10, 5, 3)
    assert torch.equal(torch.cat([src, tgt], dim=1), window)
    assert (fc.splits["train"].tgt_lengths == 5).all() and fc.tgt_offset == 11 and rec.tgt_offset == 0
    # channels differ: each draws its own frequency, phase and amplitude
    assert not torch.allclose(window[..., 0], window[..., 1], atol=0.2)


def test_sine_bursts_have_random_lengths_and_constant_padding() -> None:
    dm = SineBurstsDataModule(min_length=4, max_length=12, pad_value=-7.0, n_train=300, n_val=5, n_test=5)
    dm.setup()
    batch = dm.splits["train"]
    lengths = batch.src_lengths
    assert batch.src.shape == (300, 12, 2) and torch.equal(lengths, batch.tgt_lengths)
    assert lengths.min() == 4 and lengths.max() == 12
    for b in range(20):
        n = int(lengths[b])
        assert (batch.src[b, n:] == -7.0).all() and (batch.src[b, :n].abs() < 2).all()
    # the skill baseline ignores padding: position 11 averages only the bursts that reach it
    mean = dm.target_mean()
    reach = lengths > 11
    torch.testing.assert_close(mean[11], batch.tgt[reach, 11].mean(0))


@pytest.mark.parametrize(
    "cls,kwargs,key",
    [
        (RampDataModule, {"length": 1}, "data.length"),
        (RampDataModule, {"start_low": 1.0, "start_high": 0.0}, "data.start_low"),
        (RampDataModule, {"target_length": 4}, "data.target_length"),
        (SineDataModule, {"mode": "predict"}, "data.mode"),
        (SineDataModule, {"mode": "forecast", "horizon": 16}, "data.horizon"),
        (SineDataModule, {"mode": "forecast", "target_length": 16}, "data.target_length=16 but data.mode=forecast"),
        (SineDataModule, {"freq_high": 0.9}, "data.freq_high"),
        (SineDataModule, {"noise_std": -1.0}, "data.noise_std"),
        (SineBurstsDataModule, {"min_length": 9, "max_length": 4}, "data.min_length"),
        (SineBurstsDataModule, {"target_length": 5}, "data.target_length"),
    ],
)
def test_bad_values_name_their_key(cls, kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        cls(**kwargs)
