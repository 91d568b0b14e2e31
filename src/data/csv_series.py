"""The user's own series from CSV files: one column per sensor, an optional timestamp column and an
optional 0/1 label column (1 = anomalous)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.checks import InputFileError, check_choice
from src.data.series import LabelledSeries, SeriesDataModule

log = logging.getLogger(__name__)

FILLS = ("error", "ffill", "interpolate")
AUTO_TIMESTAMP = ("timestamp",)
AUTO_LABEL = ("is_anomaly", "label")
CHUNK_ROWS = 100_000  # rows parsed at a time: memory stays near the series' own size


class ColumnSpec:
    """Which columns of a file are sensors, timestamp and label; ``auto`` finds the usual names."""

    def __init__(
        self, columns: list[str] | None, timestamp_column: str | None, label_column: str | None, fill: str
    ) -> None:
        self.columns = list(columns) if columns else None
        self.timestamp_column, self.label_column = timestamp_column, label_column
        self.fill = check_choice("data.fill", fill, FILLS)

    def resolve(self, path: Path, header: pd.DataFrame) -> tuple[list[str], str | None, str | None]:
        """(sensor columns, timestamp column, label column) of a file, from its first rows."""
        names = [str(c) for c in header.columns]

        def pick(value: str | None, auto: tuple[str, ...], key: str) -> str | None:
            if value == "auto":
                return next((name for name in auto if name in names), None)
            if value is not None and value not in names:
                raise InputFileError(f"{path}: no column {value!r} ({key}); the file has {names}")
            return value

        timestamp = pick(self.timestamp_column, AUTO_TIMESTAMP, "data.timestamp_column")
        label = pick(self.label_column, AUTO_LABEL, "data.label_column")
        if self.columns is not None:
            missing = [c for c in self.columns if c not in names]
            if missing:
                raise InputFileError(f"{path}: no column {missing[0]!r} (data.columns); the file has {names}")
            return self.columns, timestamp, label
        candidates = [c for c in names if c not in (timestamp, label)]
        sensors = [c for c in candidates if pd.api.types.is_numeric_dtype(header[c])]
        skipped = [c for c in candidates if c not in sensors]
        if skipped:
            log.info("%s: skipping non-numeric column(s) %s (name them in data.columns to use them)", path, skipped)
        if not sensors:
            raise InputFileError(f"{path}: no numeric column to use as a sensor; the file has {names}")
        return sensors, timestamp, label


def open_csv(path: str | Path, key: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{key}={path}: no such file")
    if path.stat().st_size == 0:
        raise InputFileError(f"{key}={path}: the file is empty")
    return path


def chunks(path: Path, usecols: list | None = None, rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The file ``rows`` rows at a time; an unreadable file is one line."""
    try:
        yield from pd.read_csv(path, usecols=usecols, chunksize=rows)
    except pd.errors.EmptyDataError:
        raise InputFileError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as error:
        raise InputFileError(f"{path}: not a readable CSV file ({str(error).splitlines()[0]})") from None


def head(path: Path) -> pd.DataFrame:
    """The first rows of a file: enough to tell its columns and their types."""
    frame = next(chunks(path, rows=1000), None)
    if frame is None or frame.empty:
        raise InputFileError(f"{path}: the file has a header but no rows")
    return frame


def as_numbers(frame: pd.DataFrame, path: Path, first_line: int) -> np.ndarray:
    """The frame as float64, or an error naming the first non-numeric cell (line numbers count the header)."""
    out = np.empty(frame.shape, dtype=np.float64)
    for j, column in enumerate(frame.columns):
        raw = frame[column]
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = numbers.isna() & raw.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputFileError(
                f"{path}: column {column!r}, line {first_line + row}: {raw.iloc[row]!r} is not a number"
            )
        out[:, j] = numbers.to_numpy(dtype=np.float64)
    return out


def fill_missing(values: np.ndarray, columns: list[str], path: Path, fill: str) -> np.ndarray:
    """NaN and inf handled by ``data.fill``: refused (``error``), carried forward (``ffill``, and
    backward for leading gaps) or linearly interpolated (``interpolate``)."""
    missing = ~np.isfinite(values)
    if not missing.any():
        return values
    row, col = (int(i[0]) for i in np.nonzero(missing))
    if fill == "error":
        raise InputFileError(
            f"{path}: column {columns[col]!r}, line {row + 2}: {values[row, col]} "
            f"(set data.fill=ffill or data.fill=interpolate to fill missing values)"
        )
    frame = pd.DataFrame(np.where(missing, np.nan, values))
    if fill == "ffill":
        frame = frame.ffill().bfill()
    else:
        frame = frame.interpolate(limit_direction="both")
    if frame.isna().any().any():
        empty = columns[int(np.flatnonzero(frame.isna().any().to_numpy())[0])]
        raise InputFileError(f"{path}: column {empty!r} holds no finite value to fill from")
    return frame.to_numpy()


def check_labels(labels: np.ndarray, path: Path, column: str) -> np.ndarray:
    bad = ~np.isin(labels, (0.0, 1.0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFileError(f"{path}: column {column!r}, line {row + 2}: {labels[row]} is not a 0/1 label")
    return labels.astype(bool)


def read_series(path: Path, spec: ColumnSpec, sensors: list[str] | None = None) -> tuple[LabelledSeries, list[str]]:
    """A whole file as (series, sensor columns); ``sensors`` pins the columns (those a model was trained on)."""
    parts, labels, first_line, used = [], [], 2, None
    for frame in chunks(path):
        if used is None:
            found, _, label = spec.resolve(path, frame)
            used = sensors if sensors is not None else found
            missing = [c for c in used if c not in frame.columns]
            if missing:
                raise InputFileError(f"{path}: no column {missing[0]!r}, which the model was trained on")
        parts.append(as_numbers(frame[used], path, first_line))
        if label is not None:
            labels.append(as_numbers(frame[[label]], path, first_line)[:, 0])
        first_line += len(frame)
    if used is None or not parts:
        raise InputFileError(f"{path}: the file has a header but no rows")
    values = fill_missing(np.concatenate(parts), used, path, spec.fill)
    flags = check_labels(np.concatenate(labels), path, label) if labels else np.zeros(len(values), dtype=bool)
    series = LabelledSeries(torch.from_numpy(values.astype(np.float32)), torch.from_numpy(flags), str(path))
    return series, used


def count_sensor_columns(
    path: str, columns: list[str] | None, timestamp_column: str | None, label_column: str | None
) -> int:
    """How many sensors a file has: ``data.n_features`` of ``data=csv``, read from its first rows."""
    file = open_csv(path, "data.train_file")
    return len(ColumnSpec(columns, timestamp_column, label_column, "error").resolve(file, head(file))[0])


class CsvSeriesDataModule(SeriesDataModule):
    """``train_file`` (normal data; rows labelled 1 stay out of training) and, optionally, a
    ``threshold_file`` (vN2 + vA) and a ``test_file``; what is not given is cut from the end of the
    train file by time (see ``SeriesDataModule``)."""

    def __init__(
        self,
        train_file: str,
        test_file: str | None = None,
        threshold_file: str | None = None,
        columns: list[str] | None = None,
        timestamp_column: str | None = "auto",
        label_column: str | None = "auto",
        fill: str = "error",
        window: int = 64,
        stride: int = 16,
        scaling: str = "standard",
        val_fraction: float = 0.1,
        threshold_fraction: float = 0.1,
        test_fraction: float = 0.3,
        batch_size: int = 32,
        eval_batch_size: int = 256,
        seed: int = 0,
        on_device: bool = False,
        n_features: int | None = None,
        target_length: int | None = None,
    ) -> None:
        super().__init__(
            window,
            stride,
            scaling,
            val_fraction,
            threshold_fraction,
            test_fraction,
            batch_size,
            eval_batch_size,
            seed,
            on_device,
        )
        self.files = {"train": open_csv(train_file, "data.train_file")}
        for name, path in (("threshold", threshold_file), ("test", test_file)):
            if path is not None:
                self.files[name] = open_csv(path, f"data.{name}_file")
        self.spec = ColumnSpec(columns, timestamp_column, label_column, fill)
        self.n_features = n_features
        self.check_declared("target_length", target_length, self.window)

    def load(self) -> dict[str, LabelledSeries]:
        train, self.columns = read_series(self.files["train"], self.spec)
        self.check_declared("n_features", self.n_features, len(self.columns))
        self.n_features = len(self.columns)
        loaded = {"train": train}
        for name in ("threshold", "test"):
            if name in self.files:
                path = self.files[name]
                found = self.spec.resolve(path, head(path))[0]
                if sorted(found) != sorted(self.columns):
                    raise InputFileError(f"{path}: sensor columns {found} differ from data.train_file's {self.columns}")
                loaded[name] = read_series(path, self.spec, self.columns)[0]
        return loaded
