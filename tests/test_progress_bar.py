"""The console during fit: one bar per epoch, validation as its metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.lightning_internals import Tqdm
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


def test_the_epoch_bar_is_redrawn_three_times_an_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each redraw writes a line to a log file: the epoch's start, its (one) execution's end and the
    epoch's end, with validation's metrics, are three; Lightning alone redraws six times."""
    redraws = []
    refresh = Tqdm.refresh

    def counted(bar: Tqdm, *args, **kwargs) -> None:
        if not bar.disable:
            redraws.append(bar.desc)
        refresh(bar, *args, **kwargs)

    monkeypatch.setattr(Tqdm, "refresh", counted)
    overrides = [
        "trainer.max_epochs=4",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_model_summary=false",
        "~callbacks.model_summary",
        "logger=csv",
        "test=false",
    ]
    train(compose_config("train", overrides, tmp_path))
    per_epoch = {epoch: redraws.count(f"Epoch {epoch}: ") for epoch in range(4)}  # tqdm adds ": "
    assert per_epoch == {0: 3, 1: 3, 2: 3, 3: 3}, redraws
