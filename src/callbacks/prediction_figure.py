"""A grid of fixed validation examples: input, truth and prediction on one time axis."""
from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from pytorch_lightning.loggers import TensorBoardLogger  # noqa: E402
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn  # noqa: E402

from src.data.batch import SeqBatch  # noqa: E402

log = logging.getLogger(__name__)


class PredictionFigure(pl.Callback):
    """Every ``every_n_epochs`` epochs, logs ``val/predictions``: ``n_examples`` fixed validation
    sequences, each channel's input, truth and prediction drawn on one time axis.

    The target is drawn after the input for continuation data and over it for reconstruction
    data, as the datamodule's ``tgt_offset`` says.
    """

    def __init__(self, every_n_epochs: int = 10, n_examples: int = 4, tag: str = "val/predictions") -> None:
        if every_n_epochs < 1 or n_examples < 1:
            raise ValueError(
                f"callbacks.prediction_figure.every_n_epochs={every_n_epochs} and n_examples={n_examples} must be >= 1"
            )
        self.every_n_epochs, self.n_examples, self.tag = every_n_epochs, n_examples, tag
        self._warned = False
        self._skipped_tokens = False

    def _tensorboard(self, trainer: pl.Trainer):
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        if not self._warned and not trainer.fast_dev_run:
            rank_zero_warn("PredictionFigure draws only to a TensorBoard logger; none is configured (logger=...)")
            self._warned = True
        return None

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        if trainer.sanity_checking or (epoch % self.every_n_epochs and not last):
            return
        writer = self._tensorboard(trainer)
        if writer is None:
            return
        datamodule = trainer.datamodule
        batch = datamodule.splits["val"].index(slice(0, self.n_examples))
        if not batch.src.is_floating_point():
            # Token data has no value axis to draw; the token callbacks (callbacks=seq2seq) show it.
            if not self._skipped_tokens:
                log.info("PredictionFigure skipped: the data is integer tokens, not real values")
                self._skipped_tokens = True
            return
        batch = SeqBatch(*(t.to(pl_module.device) for t in batch))
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            pred = pl_module(batch).float().cpu()
        pl_module.train(was_training)
        figure = draw_predictions(SeqBatch(*(t.cpu() for t in batch)), pred, getattr(datamodule, "tgt_offset", 0))
        writer.add_figure(self.tag, figure, global_step=trainer.global_step)
        plt.close(figure)


def draw_predictions(batch: SeqBatch, pred: torch.Tensor, tgt_offset: int) -> plt.Figure:
    """One panel per example; every feature gets its own colour, truth solid, prediction dashed."""
    n = batch.size
    cols = min(n, 2)
    rows = -(-n // cols)
    # A small, fixed layout: tight_layout and high dpi cost more than an epoch of these models.
    figure, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 2.6 * rows), dpi=72, squeeze=False)
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
