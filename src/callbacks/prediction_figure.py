"""A grid of fixed validation examples: input, truth and prediction on one time axis."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from src.callbacks.snapshot import ValidationSnapshot  # noqa: E402
from src.data.batch import SeqBatch  # noqa: E402


class PredictionFigure(ValidationSnapshot):
    """Every ``every_n_epochs`` epochs, logs ``val/predictions``: ``n_examples`` fixed validation
    sequences, each channel's input, truth and prediction drawn on one time axis.

    The target is drawn after the input for continuation data and over it for reconstruction
    data, as the datamodule's ``tgt_offset`` says. The figure is built once per fit; later
    snapshots only move the prediction lines.
    """

    config_key = "callbacks.prediction_figure"

    def __init__(self, every_n_epochs: int = 10, n_examples: int = 4, tag: str = "val/predictions") -> None:
        super().__init__(every_n_epochs, n_examples, tag)
        self._plot: PredictionPlot | None = None

    def skip_reason(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch) -> str | None:
        if not batch.src.is_floating_point():
            return "the data is integer tokens, not real values (callbacks=seq2seq shows those)"
        return None

    def snapshot(self, writer, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch) -> None:
        pred = pl_module(batch).float().cpu()
        if self._plot is None:
            self._plot = PredictionPlot(batch.to("cpu"), getattr(trainer.datamodule, "tgt_offset", 0))
        self._plot.show(pred)
        writer.add_figure(self.tag, self._plot.figure, global_step=trainer.global_step, close=False)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._plot is not None:
            plt.close(self._plot.figure)
            self._plot = None


class PredictionPlot:
    """One panel per example; every feature gets its own colour, truth solid, prediction dashed.

    Building the axes and their ticks is most of a figure's cost, so it is done once, and ``show``
    only replaces the predictions and rescales.
    """

    def __init__(self, batch: SeqBatch, tgt_offset: int) -> None:
        n = batch.size
        cols = min(n, 2)
        rows = -(-n // cols)
        # tight_layout or a high dpi would cost more than an epoch of these models.
        self.figure, axes = plt.subplots(
            rows, cols, figsize=(4.5 * cols, 2.6 * rows), dpi=72, squeeze=False, sharex=True, sharey=True
        )
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
                ax.plot(src_t, batch.src[k, :s_len, f], "o-", color=colour, alpha=0.35, label="input" if first else None)
                ax.plot(tgt_t, batch.tgt[k, :t_len, f], "s-", color=colour, label="truth" if first else None)
                (line,) = ax.plot(tgt_t, batch.tgt[k, :t_len, f], "x--", color=colour, label="prediction" if first else None)
                self.predictions.append((line, k, f, t_len))
            ax.set_title(f"validation example {k}", fontsize="small")
            if k == 0:
                ax.legend(fontsize="small")
        self.figure.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.92, wspace=0.2, hspace=0.5)

    def show(self, pred: torch.Tensor) -> None:
        """Draws ``pred`` (B, T, F) as the prediction lines, rescaling the axes to all that is shown."""
        for line, k, f, t_len in self.predictions:
            line.set_ydata(pred[k, :t_len, f])
        for ax in self.axes:
            ax.relim()
            ax.autoscale_view()
