"""Long labelled series cut by time into the splits of anomaly detection, and into windows.

The splits follow EncDec-AD (Malhotra et al. 2016): normal data in ``train`` (sN, fits the
model), ``val`` (vN1, early stopping and the error distribution) and, where no separate
threshold series is given, the normal part of ``threshold`` (vN2); labelled data with anomalies
in ``threshold`` (vN2 + vA, chooses the threshold) and ``test`` (tN + tA). Every split is a
stretch of time: no window lies in two splits and no test point is seen in training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch
from typing_extensions import override

from src.checks import ConfigError, InputFileError, check_choice, check_number
from src.data.batch import SeqBatch
from src.data.module import SplitsDataModule, TensorBatchLoader

SCALINGS = ("standard", "minmax", "none")
STRETCHES = ("train", "val", "threshold", "test")


@dataclass(frozen=True)
class LabelledSeries:
    """``values`` (N, F) float32, ``labels`` (N,) bool (True = anomalous), ``source`` names it in errors."""

    values: torch.Tensor
    labels: torch.Tensor
    source: str

    def cut(self, start: int, end: int, name: str) -> LabelledSeries:
        return LabelledSeries(self.values[start:end], self.labels[start:end], f"{self.source} ({name} split)")

    def __len__(self) -> int:
        return self.values.shape[0]


def window_starts(length: int, window: int, stride: int) -> torch.Tensor:
    """Start of every window, ``stride`` apart, plus one ending at the last point so that every point
    is covered; empty when the series is shorter than one window."""
    if length < window:
        return torch.zeros(0, dtype=torch.long)
    starts = torch.arange(0, length - window + 1, stride)
    if int(starts[-1]) != length - window:
        starts = torch.cat([starts, torch.tensor([length - window])])
    return starts


def cut_windows(values: torch.Tensor, starts: torch.Tensor, window: int) -> torch.Tensor:
    """(len(starts), window, F) copies of the windows of ``values`` (N, F) starting at ``starts``."""
    return values.unfold(0, window, 1)[starts].transpose(1, 2).contiguous()


def scaling_of(values: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift, scale) per channel such that ``(x - shift) / scale`` is standardised or in [0, 1]."""
    if kind == "none":
        return torch.zeros(values.shape[1]), torch.ones(values.shape[1])
    if kind == "standard":
        shift, scale = values.mean(0), values.std(0)
    else:
        shift, scale = values.min(0).values, values.max(0).values - values.min(0).values
    return shift, torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant channel stays as it is


class SeriesDataModule(SplitsDataModule):
    """Windows of a long multichannel series for reconstruction (``tgt = src``), and the labelled
    stretches the anomaly scorer is fitted and tested on.

    Subclasses implement ``load()``: the ``train`` series (normal data; points labelled anomalous
    are kept out of the training and validation windows) and, optionally, a ``threshold`` and a
    ``test`` series. What is not given is cut from the end of ``train`` by time, by
    ``threshold_fraction`` and ``test_fraction``; ``val_fraction`` of it precedes those. Scaling is
    fitted on the normal points of the train stretch only.

    Training windows may start at any point; each epoch trains on a fresh random ``1/stride`` of
    them, as many as windows ``stride`` apart would give. Windows at a fixed stride would show the
    model a periodic series at only the phases that the stride allows, and the scorer (which
    rebuilds a window at every point by default) the others, which it never learned.
    """

    def __init__(
        self,
        window: int,
        stride: int,
        scaling: str,
        val_fraction: float,
        threshold_fraction: float,
        test_fraction: float,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        on_device: bool = False,
    ) -> None:
        super().__init__(batch_size, seed, eval_batch_size, on_device)
        self.window = check_number("data.window", window, 2, integer=True)
        self.stride = check_number("data.stride", stride, 1, self.window, integer=True)
        self.scaling = check_choice("data.scaling", scaling, SCALINGS)
        self.fractions = {
            name: check_number(f"data.{name}_fraction", value, 0.0, 1.0, high_open=True)
            for name, value in (("val", val_fraction), ("threshold", threshold_fraction), ("test", test_fraction))
        }
        self.series: dict[str, LabelledSeries] = {}
        self.shift = self.scale = torch.zeros(0)
        self.columns: list[str] = []  # one name per channel, set by ``load``
        self.target_length = self.window

    def load(self) -> dict[str, LabelledSeries]:
        raise NotImplementedError

    def stretches(self, loaded: dict[str, LabelledSeries]) -> dict[str, LabelledSeries]:
        """The four splits by time: val, threshold and test cut from the end of ``train`` where not given."""
        train = loaded["train"]
        cut_from_train = ["val"] + [name for name in ("threshold", "test") if name not in loaded]
        fractions = [self.fractions[name] for name in cut_from_train]
        if sum(fractions) >= 1.0:
            keys = " + ".join(f"data.{name}_fraction" for name in cut_from_train)
            raise ConfigError(f"{keys} = {sum(fractions):g} leaves nothing of {train.source} to train on")
        out, end = {}, len(train)
        for name, fraction in reversed(list(zip(cut_from_train, fractions))):
            start = end - round(fraction * len(train))
            out[name] = train.cut(start, end, name)
            end = start
        out["train"] = train.cut(0, end, "train")
        out.update({name: loaded[name] for name in ("threshold", "test") if name in loaded})
        return {name: out[name] for name in STRETCHES}

    def normal_windows(self, series: LabelledSeries, split: str, stride: int | None = None) -> torch.Tensor:
        """The windows of ``series``, ``stride`` apart (default ``data.stride``), that hold no point
        labelled anomalous."""
        starts = window_starts(len(series), self.window, stride or self.stride)
        if len(starts):
            touched = series.labels.float().unfold(0, self.window, 1)[starts].amax(1) > 0
            starts = starts[~touched]
        if not len(starts):
            raise InputFileError(
                f"{series.source}: no {self.window}-point window without anomalies is left for the {split} split "
                f"({len(series)} points, {int(series.labels.sum())} labelled anomalous); "
                f"give more normal data or lower data.window"
            )
        return cut_windows(series.values, starts, self.window)

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        stretches = self.stretches(self.load())
        train = stretches["train"]
        self.shift, self.scale = scaling_of(train.values[~train.labels], self.scaling)
        self.series = {name: self.scaled(s) for name, s in stretches.items()}
        for name in ("threshold", "test"):
            if len(self.series[name]) < self.window:
                raise InputFileError(
                    f"{self.series[name].source}: {len(self.series[name])} points is shorter than one window "
                    f"(data.window={self.window})"
                )
        windows = {"train": self.normal_windows(self.series["train"], "train", stride=1)}
        windows["val"] = self.normal_windows(self.series["val"], "val")
        test = self.series["test"]
        windows["test"] = cut_windows(test.values, window_starts(len(test), self.window, self.stride), self.window)
        self.splits = {name: reconstruction_batch(w) for name, w in windows.items()}

    @override
    def loader_class(self) -> Callable[..., TensorBatchLoader]:
        return partial(TensorBatchLoader, subsample=self.stride)

    def scaled(self, series: LabelledSeries) -> LabelledSeries:
        return replace(series, values=(series.values - self.shift) / self.scale)


def reconstruction_batch(windows: torch.Tensor) -> SeqBatch:
    """Windows as their own targets."""
    lengths = torch.full((windows.shape[0],), windows.shape[1], dtype=torch.long)
    return SeqBatch(src=windows, src_lengths=lengths, tgt=windows, tgt_lengths=lengths)
