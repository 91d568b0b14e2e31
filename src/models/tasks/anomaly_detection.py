"""Anomaly detection by reconstruction (EncDec-AD): train on normal windows, score points by how
badly they are rebuilt."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from typing_extensions import override

from src.checks import ConfigError
from src.data.series import SeriesDataModule, cut_windows, window_starts
from src.metrics.anomaly import anomaly_metrics
from src.models.scorer import MahalanobisScorer
from src.models.tasks.base import CompileMode
from src.models.tasks.sequence_regression import SequenceRegressionTask

log = logging.getLogger(__name__)

# Validation metrics that select the checkpoint by detection, not reconstruction (model.monitor).
DETECTION_MONITORS = ("val/threshold_auroc", "val/threshold_auprc")


@dataclass
class ScoredSeries:
    """A labelled series with each point's score and flag, as the test split was scored."""

    values: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    flags: torch.Tensor
    tau: float


class AnomalyDetectionTask(SequenceRegressionTask):
    """Trains a reconstruction net on normal windows (``tgt = src``), as ``SequenceRegressionTask``
    does; at test, fits the ``MahalanobisScorer`` (if the checkpoint holds no fitted one) on the
    validation and threshold splits, scores every point of the test split and logs ``test/auroc``,
    ``test/auprc``, ``test/f_beta``, ``test/precision``, ``test/recall``, ``test/event_recall``, ...

    The fitted scorer is written into the tested checkpoint, so that ``src.predict`` and ``src.eval``
    reuse it without the training data.

    With ``model.monitor`` = ``val/threshold_auroc`` or ``val/threshold_auprc``, every validation
    epoch also fits a scorer, as the test will, on that epoch's validation errors and logs how well
    it ranks the threshold split (vN2 + vA); the best checkpoint is then the epoch that detects
    best, not the one that rebuilds best.
    """

    reconstruction_only = True

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        loss: str = "mse",
        teacher_forcing: float = 0.0,
        monitor: str = "val/loss",
        scorer: dict[str, Any] | None = None,
        score_batch_size: int = 512,
        gradient_clip: float | None = None,
        steps_per_execution: int = 1,
        compile: bool | CompileMode = False,
    ) -> None:
        super().__init__(
            net, optimizer, scheduler, loss, teacher_forcing, monitor, gradient_clip, steps_per_execution, compile
        )
        if not net.reconstructs:
            raise ConfigError(
                f"model.net._target_={type(net).__name__} cannot reconstruct its input, which the anomaly task "
                f"(data=anomaly, data=csv) scores: use model=repeat_vector, stacked_lstm or encdec_ad"
            )
        self.scorer = MahalanobisScorer(net.n_features, **(scorer or {}))
        self.score_batch_size = int(score_batch_size)
        self.scored_test: ScoredSeries | None = None
        self._fitted_now = False

    @override
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, SeriesDataModule):
            raise ConfigError(
                f"model._target_=AnomalyDetectionTask needs a series (data=anomaly or data=csv), "
                f"not data._target_={type(datamodule).__name__}"
            )
        super().setup(stage)
        self.read_series_layout(datamodule)
        labels = datamodule.series["threshold"].labels
        if stage == "fit" and self.hparams.monitor in DETECTION_MONITORS and (labels.all() or not labels.any()):
            raise ConfigError(
                f"model.monitor={self.hparams.monitor} needs normal and anomalous points in the threshold split, "
                f"which has {'no anomalies' if not labels.any() else 'no normal points'}: use model.monitor=val/loss"
            )

    def read_series_layout(self, datamodule: SeriesDataModule) -> None:
        """Give the scorer the series' scaling, window, stride and columns, which it keeps for predict."""
        dm = datamodule
        self.scorer.set_input(dm.shift, dm.scale, dm.window, dm.stride, dm.columns)

    @override
    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.hparams.monitor in DETECTION_MONITORS and not self.trainer.sanity_checking:
            self.log_dict(self.threshold_split_detection(self.trainer.datamodule))

    def threshold_split_detection(self, datamodule: SeriesDataModule) -> dict[str, float]:
        """``val/threshold_auroc`` and ``val/threshold_auprc``: a scorer fitted on the validation errors
        (vN1) ranking the threshold split's points."""
        probe = copy.deepcopy(self.scorer)  # the task's own is fitted once, at test, on the tested checkpoint
        val, threshold = datamodule.series["val"], datamodule.series["threshold"]
        errors = torch.cat([e.reshape(-1, e.shape[-1]) for _, e in self.window_errors(val.values, probe)])
        probe.fit_distribution(errors)
        scores = self.point_scores(threshold.values, probe)
        metrics = anomaly_metrics(scores, probe.flags(scores), threshold.labels, probe.beta)
        return {"val/threshold_auroc": metrics["auroc"], "val/threshold_auprc": metrics["auprc"]}

    def window_errors(
        self, values: torch.Tensor, scorer: MahalanobisScorer | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(starts, |x - x'| of those windows (B, window, F)) over ``values`` (N, F), a batch at a time,
        at the window and stride of ``scorer`` (default: the task's)."""
        scorer = self.scorer if scorer is None else scorer
        window = scorer.window
        for starts in window_starts(len(values), window, scorer.stride).split(self.score_batch_size):
            windows = cut_windows(values, starts, window).to(self.device)
            lengths = torch.full((len(starts),), window, dtype=torch.long, device=self.device)
            with torch.no_grad():
                rebuilt = self.net(windows, lengths, windows, teacher_forcing=0.0, tgt_lengths=lengths)
            yield starts, (windows - rebuilt.to(windows.dtype)).abs().float()

    def point_scores(self, values: torch.Tensor, scorer: MahalanobisScorer | None = None) -> torch.Tensor:
        """(N,) score of every point by ``scorer`` (default: the task's): its windows' scores combined
        by ``model.scorer.combine``."""
        scorer = self.scorer if scorer is None else scorer
        window, n = scorer.window, len(values)
        total = torch.zeros(n, dtype=torch.float64)
        count = torch.zeros(n, dtype=torch.float64)
        offsets = torch.arange(window)
        for starts, errors in self.window_errors(values, scorer):
            index = (starts[:, None] + offsets).flatten()
            scores = scorer.score(errors).double().cpu()
            if scorer.combine == "max":
                total.scatter_reduce_(0, index, scores.flatten(), reduce="amax")
            else:
                weights = scorer.window_weights(scores)
                total.index_add_(0, index, (scores * weights).flatten())
                count.index_add_(0, index, weights.flatten())
        return total if scorer.combine == "max" else total / count

    def fit_scorer(self, datamodule: SeriesDataModule) -> None:
        """mu, Sigma from the validation errors (vN1); tau from the threshold split (vN2 + vA)."""
        val, threshold = datamodule.series["val"], datamodule.series["threshold"]
        normal = val.values
        errors = torch.cat([e.reshape(-1, e.shape[-1]) for _, e in self.window_errors(normal)])
        self.scorer.fit_distribution(errors)
        normal_scores = self.point_scores(normal)[~val.labels]
        self.scorer.choose_threshold(normal_scores, self.point_scores(threshold.values), threshold.labels)
        self._fitted_now = True

    @override
    def on_test_start(self) -> None:
        if not self.scorer.fitted:
            self.fit_scorer(self.trainer.datamodule)
        log.info("anomaly threshold tau=%.4g, %s", float(self.scorer.tau), self.scorer.rule)

    @override
    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        test = self.trainer.datamodule.series["test"]
        scores = self.point_scores(test.values)
        flags = self.scorer.flags(scores)
        self.scored_test = ScoredSeries(test.values, test.labels, scores, flags, float(self.scorer.tau))
        metrics = anomaly_metrics(scores, flags, test.labels, self.scorer.beta)
        metrics["tau"] = float(self.scorer.tau)
        self.log_dict({f"test/{name}": value for name, value in metrics.items()})

    @override
    def on_test_end(self) -> None:
        path = self.trainer.ckpt_path
        if self._fitted_now and path and self.trainer.is_global_zero:
            store_scorer(path, {f"scorer.{k}": v for k, v in self.scorer.state_dict().items()})
        self._fitted_now = False


def store_scorer(path: str, state: dict[str, Any]) -> None:
    """Write the fitted scorer's state into the checkpoint at ``path`` (atomically: a crash leaves
    the old file)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["state_dict"].update(state)
    partial = f"{path}.partial"
    torch.save(checkpoint, partial)
    os.replace(partial, path)
