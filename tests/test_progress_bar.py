"""The console during fit: one bar per epoch, validation as its metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.train import train
from tests.conftest import compose_config


def test_validation_inside_fit_shows_on_the_epoch_bar_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    overrides = [
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "trainer.enable_model_summary=false",
        "~callbacks.model_summary",
        "logger=csv",
    ]
    train(compose_config("train", overrides, tmp_path))
    console = capsys.readouterr().out
    assert "Sanity Checking DataLoader" in console and "Testing DataLoader" in console
    assert "Validation DataLoader" not in console
    assert "Epoch 1: 100%" in console and "val/loss=" in console
