"""A grid of fixed validation examples: input, truth and prediction on one time axis."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from src.callbacks.snapshot import ValidationSnapshot
from src.data.batch import SeqBatch
from src.models.tasks.sequence_regression import SequenceRegressionTask


class PredictionFigure(ValidationSnapshot):
    """Every ``every_n_epochs`` epochs, logs ``val/predictions``: ``n_examples`` fixed validation
    sequences, each channel's input, truth and prediction drawn on one time axis.

    The target is drawn after the input for continuation data and over it for reconstruction
    data, as the datamodule's ``tgt_offset`` says. The figure is built and first drawn when fit
    starts; snapshots then mostly redraw only the prediction lines (see ``PredictionPlot``).
    """

    config_key = "callbacks.prediction_figure"

    def __init__(self, every_n_epochs: int = 10, n_examples: int = 4, tag: str = "val/predictions") -> None:
        super().__init__(every_n_epochs, n_examples, tag)
        self._plot: PredictionPlot | None = None

    def skip_reason(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch) -> str | None:
        if not isinstance(pl_module, SequenceRegressionTask):
            return "the data is integer tokens, not real values (callbacks=seq2seq shows those)"
        return None

    @override
    def prepare(self, trainer: pl.Trainer, batch: SeqBatch) -> None:
        # Building and first drawing the figure take ~0.35 s (fonts, layout); the truth stands in for
        # the predictions, so that the axes start at the data's range.
        self._plot = PredictionPlot(batch, trainer.datamodule.tgt_offset)
        self._plot.render(batch.tgt.float())

    def snapshot(self, writer, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch) -> None:
        pred = pl_module(batch).float().cpu()
        if self._plot is None:
            self.prepare(trainer, batch.to("cpu"))
        add_png(writer, self.tag, self._plot.render(pred), trainer.global_step)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._plot = None


def add_png(writer: SummaryWriter, tag: str, image: np.ndarray, step: int) -> None:
    """Logs what ``writer.add_image(tag, image, step, dataformats="HWC")`` logs for a uint8 (H, W, 3)
    image, in a third of its time: ``add_image`` converts the pixels to float and back and resamples them
    at scale 1 (~5 ms for this figure, more than an epoch's validation), and compresses harder than a
    figure of lines gains from (~1 ms for 8% of the bytes)."""
    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, format="PNG", compress_level=1)
    height, width, channels = image.shape
    png = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=encoded.getvalue())
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=png)]), step)


VALUE_MARGIN = 0.1  # of the data's value range, on each side of the value axis


class PredictionPlot:
    """One panel per example; every feature gets its own colour, truth solid, prediction dashed.

    Axes, ticks and text are most of a figure's drawing time (~40 ms), and they only change when the
    axis limits do. The value axis spans the data's range, rounded out to the next tick, and a margin;
    it grows only for predictions beyond that. So ``render`` draws everything else once, keeps that
    image, and while the limits hold pastes it back and draws only the prediction lines on it
    (matplotlib's blitting, ~3 ms).
    """

    def __init__(self, batch: SeqBatch, tgt_offset: int) -> None:
        n = batch.size
        cols = min(n, 2)
        rows = -(-n // cols)
        # tight_layout or a high dpi would cost more than an epoch of these models.
        self.figure = Figure(figsize=(4.5 * cols, 2.6 * rows), dpi=72)
        self.canvas = FigureCanvasAgg(self.figure)
        axes = self.figure.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
        axes[0, 0].xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        axes[0, 0].yaxis.set_major_locator(MaxNLocator(nbins=4))
        self.axes = list(axes.flat)
        self.predictions: list[tuple[Line2D, int, int, int]] = []  # (line, example, feature, target length)
        for k, ax in enumerate(self.axes):
            if k >= n:
                ax.axis("off")
                continue
            s_len, t_len = int(batch.src_lengths[k]), int(batch.tgt_lengths[k])
            src_t = torch.arange(s_len)
            tgt_t = torch.arange(t_len) + (s_len if tgt_offset else 0)
            for f in range(batch.src.shape[-1]):
                colour = f"C{f % 10}"
                first = f == 0
                ax.plot(
                    src_t, batch.src[k, :s_len, f], "o-", color=colour, alpha=0.35, label="input" if first else None
                )
                ax.plot(tgt_t, batch.tgt[k, :t_len, f], "s-", color=colour, label="truth" if first else None)
                (line,) = ax.plot(
                    tgt_t,
                    batch.tgt[k, :t_len, f],
                    "x--",
                    color=colour,
                    label="prediction" if first else None,
                    animated=True,
                )
                self.predictions.append((line, k, f, t_len))
            ax.set_title(f"validation example {k}", fontsize="small")
            if k == 0:
                ax.legend(fontsize="small")
        self.figure.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.92, wspace=0.2, hspace=0.5)
        self.axes[0].set_xlim(self.axes[0].get_xlim())  # time is fixed: only the value axis follows predictions
        self._fit_values_to_lines()
        low, high = self.axes[0].get_ylim()
        # The data's range (rounded out to ticks) and a margin: the predictions of the first epochs, which
        # overshoot the data a little, mostly fall inside, so that their snapshots are blitted.
        self.value_limits = (low - VALUE_MARGIN * (high - low), high + VALUE_MARGIN * (high - low))
        self._background, self._limits = None, None

    def _fit_values_to_lines(self) -> None:
        # The value axis (shared) around every line drawn, rounded out to the next tick.
        with matplotlib.rc_context({"axes.autolimit_mode": "round_numbers"}):
            for ax in self.axes:
                ax.set_autoscaley_on(True)
                ax.relim()
                ax.autoscale_view()

    def render(self, pred: torch.Tensor) -> np.ndarray:
        """The figure with ``pred`` (B, T, F) as the predictions, as an (H, W, 3) uint8 image."""
        for line, k, f, t_len in self.predictions:
            line.set_ydata(pred[k, :t_len, f])
        # The value axis holds the data's range and margin while predictions stay inside; beyond it, it
        # grows to them, rounded out to the next tick.
        shown = torch.cat([pred[k, :t_len, f] for _, k, f, t_len in self.predictions])
        shown = shown[shown.isfinite()]
        low, high = self.value_limits
        if shown.numel() and (shown.min() < low or shown.max() > high):
            self._fit_values_to_lines()
        else:
            self.axes[0].set_ylim(low, high)  # shared by every panel
        limits = (self.axes[0].get_xlim(), self.axes[0].get_ylim())  # the axes are shared
        if limits != self._limits:
            self.canvas.draw()  # all but the animated prediction lines
            self._background, self._limits = self.canvas.copy_from_bbox(self.figure.bbox), limits
        else:
            self.canvas.restore_region(self._background)
        for line, *_ in self.predictions:
            line.axes.draw_artist(line)
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()
