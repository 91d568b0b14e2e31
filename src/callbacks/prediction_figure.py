"""A grid of fixed validation examples: input, truth and prediction on one time axis."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from src.callbacks.snapshot import ValidationSnapshot  # noqa: E402
from src.data.batch import SeqBatch  # noqa: E402


class PredictionFigure(ValidationSnapshot):
    """Every ``every_n_epochs`` epochs, logs ``val/predictions``: ``n_examples`` fixed validation
    sequences, each channel's input, truth and prediction drawn on one time axis.

    The target is drawn after the input for continuation data and over it for reconstruction
    data, as the datamodule's ``tgt_offset`` says.
    """

    config_key = "callbacks.prediction_figure"

    def __init__(self, every_n_epochs: int = 10, n_examples: int = 4, tag: str = "val/predictions") -> None:
        super().__init__(every_n_epochs, n_examples, tag)

    def skip_reason(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch) -> str | None:
        if not batch.src.is_floating_point():
            return "the data is integer tokens, not real values (callbacks=seq2seq shows those)"
        return None

    def snapshot(self, writer, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch) -> None:
        pred = pl_module(batch).float().cpu()
        figure = draw_predictions(batch.to("cpu"), pred, getattr(trainer.datamodule, "tgt_offset", 0))
        writer.add_figure(self.tag, figure, global_step=trainer.global_step)
        plt.close(figure)


def draw_predictions(batch: SeqBatch, pred: torch.Tensor, tgt_offset: int) -> plt.Figure:
    """One panel per example; every feature gets its own colour, truth solid, prediction dashed."""
    n = batch.size
    cols = min(n, 2)
    rows = -(-n // cols)
    # A small, fixed layout with shared axes and few ticks: tick labels are most of the drawing time,
    # and tight_layout or a high dpi would cost more than an epoch of these models.
    figure, axes = plt.subplots(
        rows, cols, figsize=(4.5 * cols, 2.6 * rows), dpi=72, squeeze=False, sharex=True, sharey=True
    )
    axes[0, 0].xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    axes[0, 0].yaxis.set_major_locator(MaxNLocator(nbins=4))
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        s_len, t_len = int(batch.src_lengths[k]), int(batch.tgt_lengths[k])
        src_t = torch.arange(s_len)
        tgt_t = torch.arange(t_len) + (s_len if tgt_offset else 0)
        for f in range(batch.src.shape[-1]):
            colour = f"C{f % 10}"
            ax.plot(src_t, batch.src[k, :s_len, f], "o-", color=colour, alpha=0.35, label="input" if f == 0 else None)
            ax.plot(tgt_t, batch.tgt[k, :t_len, f], "s-", color=colour, label="truth" if f == 0 else None)
            ax.plot(tgt_t, pred[k, :t_len, f], "x--", color=colour, label="prediction" if f == 0 else None)
        ax.set_title(f"validation example {k}", fontsize="small")
        if k == 0:
            ax.legend(fontsize="small")
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.92, wspace=0.2, hspace=0.5)
    return figure
