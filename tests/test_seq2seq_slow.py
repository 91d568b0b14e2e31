"""The quality bars for the default ``seq2seq`` on the post's ``increment`` task (slow: they train)."""

from __future__ import annotations

import pytest

from src.train import train
from tests.test_diagnosis import assert_no_flag

# Early stopping ends a run as soon as the bar is reached on validation; max_epochs only caps a
# run that never gets there (so a regression fails instead of hanging CI).
FAST = ["callbacks=[default,early_stopping]"]


@pytest.mark.slow
def test_default_seq2seq_overfits_the_posts_50_examples(make_cfg) -> None:
    """The post's n_data=50: exact match 1.0 on those very 50 examples (val and test = train split)."""
    cfg = make_cfg(
        "model=seq2seq",
        "data=increment",
        "data.n_train=50",
        "data.eval_on=train",
        "data.batch_size=10",
        "trainer.max_epochs=150",
        *FAST,
        tiny=False,
    )
    metrics = train(cfg)
    assert metrics["test/exact_match"] == 1.0
    assert_no_flag(metrics, {"ignores_input", "decodes_worse", "cannot_fit", "saturated", "overfitting"})


@pytest.mark.slow
def test_default_seq2seq_generalises_from_5000_examples(make_cfg) -> None:
    """n_train=5000: held-out test exact match >= 0.99 with greedy decoding.

    Validation must pass 0.997 (at most one of 500 wrong) before stopping, so the test split has margin.
    """
    cfg = make_cfg(
        "model=seq2seq",
        "data=increment",
        "data.n_train=5000",
        "trainer.max_epochs=40",
        "callbacks.early_stopping.stopping_threshold=0.997",
        *FAST,
        tiny=False,
    )
    metrics = train(cfg)
    assert metrics["test/exact_match"] >= 0.99
    assert_no_flag(metrics, {"ignores_input", "decodes_worse", "saturated", "overfitting"})
