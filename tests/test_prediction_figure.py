"""The prediction figure: redrawing only the prediction lines gives the picture a full draw gives."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from src.callbacks.prediction_figure import PredictionPlot, add_png
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


def test_predictions_near_the_data_keep_the_axes_and_are_not_fully_redrawn(examples) -> None:
    # After an epoch or two predictions overshoot the data a little: the value axis (the data's range,
    # rounded out, and a margin) holds them, so the snapshot is blitted, not drawn anew (~40 ms).
    plot = PredictionPlot(examples, tgt_offset=1)
    plot.render(examples.tgt)
    full_draws = []
    draw = plot.canvas.draw
    plot.canvas.draw = lambda: full_draws.append(1) or draw()
    low, high = plot.value_limits
    assert low < float(examples.tgt.min()) and float(examples.tgt.max()) < high
    overshoot = examples.tgt * 1.3
    assert overshoot.max() > examples.tgt.max() and overshoot.max() < high and overshoot.min() > low
    image = plot.render(overshoot)
    assert not full_draws
    assert np.array_equal(image, PredictionPlot(examples, tgt_offset=1).render(overshoot))
    plot.render(examples.tgt + 10.0)  # far outside: the axis grows to it
    assert full_draws == [1] and plot.axes[0].get_ylim()[1] >= float(examples.tgt.max()) + 10.0


def test_a_figure_logged_as_png_reads_back_as_add_image_logs_it(examples, tmp_path) -> None:
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    image = PredictionPlot(examples, tgt_offset=1).render(examples.tgt * 0.5)
    writer = SummaryWriter(tmp_path)
    writer.add_image("by_add_image", image, 3, dataformats="HWC")
    add_png(writer, "by_add_png", image, 3)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    logged = {tag: events.Images(tag) for tag in ("by_add_image", "by_add_png")}
    assert [(e.step, e.width, e.height) for e in logged["by_add_png"]] == [(3, image.shape[1], image.shape[0])]
    assert [(e.step, e.width, e.height) for e in logged["by_add_image"]] == [(3, image.shape[1], image.shape[0])]
    pixels = {tag: np.asarray(Image.open(io.BytesIO(e[0].encoded_image_string))) for tag, e in logged.items()}
    assert np.array_equal(pixels["by_add_png"], image) and np.array_equal(pixels["by_add_image"], image)
