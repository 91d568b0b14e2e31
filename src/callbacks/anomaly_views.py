"""TensorBoard views of a scored test series: score histograms and the series with its flags."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from typing_extensions import override

from src.metrics.anomaly import segments
from src.models.tasks.anomaly_detection import AnomalyDetectionTask, ScoredSeries


class AnomalyViews(pl.Callback):
    """After test of the anomaly task: ``test/score_histogram`` (normal and anomalous points' scores,
    tau drawn), ``test/anomalies`` (a ``stretch``-point piece of the test series from just before its
    first anomaly: true anomalies shaded, flagged points marked) and ``test/threshold_rule`` (text)."""

    def __init__(self, stretch: int = 1500, max_channels: int = 4) -> None:
        if stretch < 10 or max_channels < 1:
            raise ValueError(
                f"callbacks.anomaly_views.stretch={stretch} must be >= 10 and max_channels={max_channels} >= 1"
            )
        self.stretch, self.max_channels = stretch, max_channels

    @rank_zero_only
    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, AnomalyDetectionTask) or pl_module.scored_test is None:
            return
        writer = next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if writer is None:
            return
        scored, step = pl_module.scored_test, trainer.global_step
        writer.add_figure("test/score_histogram", histogram(scored), step)
        writer.add_figure("test/anomalies", series_figure(scored, self.stretch, self.max_channels), step)
        writer.add_text("test/threshold_rule", f"tau = {scored.tau:.4g}: {pl_module.scorer.rule}", step)
        writer.flush()


def histogram(scored: ScoredSeries) -> Figure:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    scores, labels = scored.scores.numpy(), scored.labels.numpy()
    bins = np.logspace(np.log10(max(scores.min(), 1e-6)), np.log10(max(scores.max(), 1e-5)), 60)
    ax.hist(scores[~labels], bins=bins, alpha=0.6, density=True, label="normal")
    if labels.any():
        ax.hist(scores[labels], bins=bins, alpha=0.6, density=True, label="anomalous")
    ax.axvline(scored.tau, color="k", linestyle="--", label=f"tau = {scored.tau:.3g}")
    ax.set(xscale="log", xlabel="score (Mahalanobis distance of the error)", ylabel="density")
    ax.legend()
    fig.tight_layout()
    return fig


def series_figure(scored: ScoredSeries, stretch: int, max_channels: int) -> Figure:
    labels = scored.labels
    first = int(segments(labels)[0, 0]) if labels.any() else 0
    start = max(0, min(first - stretch // 5, len(labels) - stretch))
    end = min(len(labels), start + stretch)
    t = np.arange(start, end)
    channels = min(scored.values.shape[1], max_channels)
    fig = Figure(figsize=(12, 1.6 * (channels + 1)))
    axes = fig.subplots(channels + 1, 1, sharex=True)
    for c in range(channels):
        axes[c].plot(t, scored.values[start:end, c].numpy(), lw=0.7)
        axes[c].set_ylabel(f"ch {c}")
    scores, flags = scored.scores[start:end].numpy(), scored.flags[start:end].numpy()
    axes[-1].plot(t, scores, lw=0.7, color="tab:gray")
    axes[-1].scatter(t[flags], scores[flags], s=6, color="tab:red", label="flagged", zorder=3)
    axes[-1].axhline(scored.tau, color="k", linestyle="--", lw=0.8)
    axes[-1].set(yscale="log", ylabel="score", xlabel="time step")
    for a, b in segments(labels[start:end]).tolist():
        for ax in axes:
            ax.axvspan(start + a, start + b, color="tab:red", alpha=0.15, lw=0)
    fig.tight_layout()
    return fig
