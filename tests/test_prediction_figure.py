"""The prediction figure: redrawing only the prediction lines gives the picture a full draw gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.callbacks.prediction_figure import PredictionPlot
from src.data.seeded import SeededDataModule


@pytest.fixture(scope="module")
def examples():
    data = SeededDataModule()
    data.setup()
    return data.splits["val"].index(slice(0, 4))


def test_later_snapshots_match_a_fresh_figure(examples) -> None:
    plot = PredictionPlot(examples, tgt_offset=1)
    first = plot.render(examples.tgt)
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[-1] == 3
    # within the data's range (blitted), then far outside it (the axes grow, a full redraw)
    for pred in (examples.tgt * 0.5, examples.tgt + 10.0, examples.tgt * 0.25):
        image = plot.render(pred)
        assert np.array_equal(image, PredictionPlot(examples, tgt_offset=1).render(pred))
    assert not np.array_equal(image, first)


def test_a_snapshot_does_not_change_the_previous_image(examples) -> None:
    plot = PredictionPlot(examples, tgt_offset=0)
    first = plot.render(examples.tgt)
    kept = first.copy()
    plot.render(torch.zeros_like(examples.tgt))
    assert np.array_equal(first, kept)
