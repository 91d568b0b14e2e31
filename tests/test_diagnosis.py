"""The end-of-fit diagnosis: each flag fires on a run built to trigger it, in metrics.json, TensorBoard and the
console."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.demos.boring_classes import BoringDataModule, BoringModel
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.callbacks.diagnosis import EpochLosses, RunDiagnosis
from src.train import train

FIGURES_OFF = "callbacks.prediction_figure.every_n_epochs=1000"


def flags(metrics: dict[str, float]) -> dict[str, float]:
    return {k.removeprefix("diagnosis/"): v for k, v in metrics.items() if k.startswith("diagnosis/")}


def diagnosis_text(run_dir: Path) -> str:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    return "\n".join(t.tensor_proto.string_val[0].decode() for t in events.Tensors("diagnosis/text_summary"))


def assert_no_flag(metrics: dict[str, float], expected: set[str]) -> None:
    """Every check in ``expected`` ran, and none fired."""
    assert set(flags(metrics)) >= expected
    assert not any(flags(metrics).values()), flags(metrics)


def test_mean_only_predictions_are_named(make_cfg, tmp_path: Path, caplog) -> None:
    """A net that has barely trained predicts about the mean, and the same thing for every input."""
    cfg = make_cfg(
        "model=repeat_vector",
        "data=seeded",
        "model.optimizer.lr=1e-6",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "test=false",
        FIGURES_OFF,
        tiny=False,
    )
    with caplog.at_level(logging.WARNING, logger="src.callbacks.diagnosis"):
        metrics = train(cfg)
    assert flags(metrics)["predicts_mean"] == 1.0 and flags(metrics)["ignores_input"] == 1.0
    assert flags(metrics)["saturated"] == 0.0 and "cannot_fit" not in flags(metrics)  # n_train 1000: not checked
    assert flags(json.loads((tmp_path / "metrics.json").read_text())) == flags(metrics)
    text = diagnosis_text(tmp_path)
    assert "predicts the unconditional mean" in text and "ignores its input" in text
    assert any("predicts the unconditional mean" in r.getMessage() for r in caplog.records)


def test_saturated_hidden_units_are_named(make_cfg, tmp_path: Path) -> None:
    """A tanh RNN stepped at lr 0.5 pins its hidden units at +-1."""
    metrics = train(
        make_cfg(
            "model=autoregressive_rnn",
            "data=seeded",
            "model.net.cell=rnn",
            "model.optimizer.lr=0.5",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=10",
            "test=false",
            FIGURES_OFF,
            tiny=False,
        )
    )
    assert flags(metrics)["saturated"] == 1.0
    assert "hidden units saturated: net.rnn" in diagnosis_text(tmp_path)


def test_a_token_run_that_should_memorise_but_cannot_is_named(make_cfg, tmp_path: Path) -> None:
    """The post's check, 50 examples with val = train, stopped after one epoch: far from memorised."""
    metrics = train(
        make_cfg(
            "model=seq2seq",
            "data=increment",
            "data.n_train=50",
            "data.eval_on=train",
            "trainer.max_epochs=1",
            "test=false",
            tiny=False,
        )
    )
    assert flags(metrics)["cannot_fit"] == 1.0
    text = diagnosis_text(tmp_path)
    assert "cannot fit the training data" in text and "data.eval_on=train" in text
    assert "normalises over the vocabulary" in text  # the causes to check


def test_a_real_valued_run_that_should_memorise_but_cannot_is_named(make_cfg) -> None:
    metrics = train(make_cfg("data.n_train=32", "trainer.max_epochs=1", "test=false", FIGURES_OFF, tiny=False))
    assert flags(metrics)["cannot_fit"] == 1.0


def test_overfit_batches_makes_the_fit_check_apply(make_cfg) -> None:
    metrics = train(make_cfg("debug=overfit", "trainer.max_epochs=1", "test=false", FIGURES_OFF, tiny=False))
    assert "cannot_fit" in flags(metrics)


def test_overfitting_is_named_with_its_best_epoch(make_cfg, tmp_path: Path) -> None:
    """8 noisy sines and 40 epochs: the net memorises the noise, validation gets worse."""
    metrics = train(
        make_cfg(
            "model=repeat_vector",
            "data=sine",
            "data.n_train=8",
            "model.net.activation=tanh",
            "model.optimizer.lr=0.01",
            "trainer.max_epochs=40",
            "test=false",
            FIGURES_OFF,
            tiny=False,
        )
    )
    assert flags(metrics)["overfitting"] == 1.0
    best = int(json.loads((tmp_path / "metrics.json").read_text())["train/best_epoch"])
    assert f"at epoch {best} (the best epoch" in diagnosis_text(tmp_path)


def test_decoding_worse_than_teacher_forcing_is_named(make_cfg, tmp_path: Path) -> None:
    """Copying 30 tokens: teacher-forced, most tokens are right; decoded, few sequences come out whole."""
    metrics = train(
        make_cfg(
            "model=seq2seq",
            "data=copy",
            "data.min_len=30",
            "data.max_len=30",
            "data.n_train=1000",
            "data.n_val=64",
            "model.net.dropout=0.0",
            "model.optimizer.lr=0.01",
            "trainer.max_epochs=5",
            "test=false",
            tiny=False,
        )
    )
    assert flags(metrics)["decodes_worse"] == 1.0
    assert "decodes worse than it is trained" in diagnosis_text(tmp_path)


def test_noise_near_a_loss_of_zero_is_not_overfitting() -> None:
    """val/loss 1e-5 -> 3e-5 after falling from 0.3 is noise, not a rise."""
    diagnosis = RunDiagnosis()
    diagnosis.history = [
        EpochLosses(0, 0.5, 0.3),
        *(EpochLosses(e, 1e-4 / e, 1e-5) for e in range(1, 6)),
        *(EpochLosses(e, 1e-5 / e, 3e-5) for e in range(6, 12)),
    ]
    assert not diagnosis._overfitting_check().fired
    diagnosis.history[-1] = EpochLosses(11, 1e-7, 0.2)
    assert diagnosis._overfitting_check().fired


def test_other_tasks_and_data_are_left_alone(tmp_path: Path) -> None:
    """A LightningModule of another kind on a plain DataModule: no check applies, nothing breaks."""
    diagnosis = RunDiagnosis()
    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[diagnosis],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(BoringModel(), datamodule=BoringDataModule())
    assert diagnosis.findings == []
    assert not any(k.startswith("diagnosis/") for k in trainer.callback_metrics)


def test_thresholds_are_checked_where_they_enter() -> None:
    with pytest.raises(ValueError, match=r"callbacks.diagnosis.saturated_above=-1.0 must lie in \[0.0, inf\]"):
        RunDiagnosis(saturated_above=-1)
