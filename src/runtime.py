"""What train.py and eval.py share: instantiating from config, printing, writing metrics.json."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import rich
import rich.syntax
import rich.table
import rich.tree
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from src.data.csv_series import count_sensor_columns
from src.quiet import silence_library_noise
from src.reporting import higher_is_better

log = logging.getLogger(__name__)

# data=csv reads its number of sensors from the file's header: ${csv_n_features:<file>,<columns>,...}
OmegaConf.register_new_resolver("csv_n_features", count_sensor_columns, replace=True)


def monitor_mode(metric: str) -> str:
    """``max`` where ``metric`` is better higher, else ``min``: ``${monitor_mode:${model.monitor}}``."""
    return "max" if higher_is_better(metric) else "min"


OmegaConf.register_new_resolver("monitor_mode", monitor_mode, replace=True)

silence_library_noise()


def instantiate_group(group: DictConfig | None, key: str) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group (``callbacks`` or ``logger``)."""
    if not group:
        return []
    if not isinstance(group, DictConfig):
        raise TypeError(f"{key} must be a mapping of name -> {{_target_: ...}}, got {type(group).__name__}")
    objects = []
    for name, node in group.items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ValueError(f"{key}.{name} has no _target_; every entry of `{key}` must be instantiable")
        objects.append(hydra.utils.instantiate(node))
    return objects


def instantiate_callbacks(cfg: DictConfig) -> list[Any]:
    """The ``callbacks`` group, less its progress bar where ``trainer.enable_progress_bar=false`` turns the
    bar off (Lightning refuses a bar callback beside that flag)."""
    callbacks = instantiate_group(cfg.get("callbacks"), "callbacks")
    if cfg.get("trainer", {}).get("enable_progress_bar", True) is False:
        callbacks = [callback for callback in callbacks if not isinstance(callback, ProgressBar)]
    return callbacks


@rank_zero_only
def print_config_tree(
    cfg: DictConfig, order: tuple[str, ...] = ("data", "model", "callbacks", "logger", "trainer")
) -> None:
    """The composed config as a rich tree, main groups first."""
    tree = rich.tree.Tree("CONFIG", style="bold", guide_style="dim")
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order and k != "paths"]
    for key in keys:
        branch = tree.add(str(key), style="bold")
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    rich.print(tree)


def collect_metrics(trainer: pl.Trainer, prefixes: tuple[str, ...] = ("val/", "test/")) -> dict[str, float]:
    """Every logged ``val/*`` and ``test/*`` scalar as a float."""
    return {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if name.startswith(prefixes) and getattr(value, "numel", lambda: 1)() == 1
    }


@rank_zero_only
def write_metrics(metrics: Mapping[str, float], output_dir: str | Path, error: str | None = None) -> Path:
    """``metrics.json``: one flat object of floats (non-finite values are written as null); a run that
    failed in training adds its one-line ``error``."""
    path = Path(output_dir) / "metrics.json"
    clean: dict[str, Any] = {k: (v if math.isfinite(v) else None) for k, v in sorted(metrics.items())}
    if error is not None:
        clean["error"] = error
    path.write_text(json.dumps(clean, indent=2) + "\n")
    return path


@rank_zero_only
def report(metrics: Mapping[str, float], output_dir: str | Path, title: str) -> None:
    """Final metrics as a table, then where the run wrote its files."""
    table = rich.table.Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(metrics.items()):
        table.add_row(name, f"{value:.6g}")
    rich.print(table)
    rich.print(f"[bold]run dir:[/bold] {output_dir}")


def metric_value(metrics: Mapping[str, float], name: str | None) -> float | None:
    """The value Hydra sweepers optimise; a missing name is a config error, not a silent None."""
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} was not logged; logged: {sorted(metrics)}")
    return metrics[name]


# Errors that mean "this input is wrong", not "the lab is broken": printed as their one line.
INPUT_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, OmegaConfBaseException, MisconfigurationException)


class RunFailed(CompactHydraException):
    """A refused input as its one line: Hydra prints a compact exception's message, no traceback
    (``HYDRA_FULL_ERROR=1`` shows the whole chain)."""


def root_cause(error: BaseException) -> BaseException:
    """Hydra wraps errors raised while instantiating; the root cause is the one that names the key."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def error_line(error: BaseException) -> str:
    """The root cause as one line: ``<type>: <message's first line>``."""
    cause = root_cause(error)
    line = f"{type(cause).__name__}: {cause}".splitlines()[0]
    full_key = getattr(cause, "full_key", None)  # OmegaConf puts the key on a later line of its message
    if full_key and full_key not in line:
        line += f" (at {full_key})"
    return line


def is_failure_in_training(error: BaseException) -> bool:
    """A non-finite loss or a crash, as opposed to an input refused before the first step."""
    cause = root_cause(error)
    return isinstance(cause, FloatingPointError) or not isinstance(cause, INPUT_ERRORS)


def record_failure(output_dir: str | Path, error: BaseException) -> str:
    """Leave the error's one line in ``<run dir>/error.txt`` so sweeps and compare.py can list it."""
    line = error_line(error)
    try:
        Path(output_dir, "error.txt").write_text(line + "\n")
    except OSError:
        pass
    return line


def fail(output_dir: str | Path, error: Exception) -> None:
    """Record a failed run, then re-raise: an input error as its one line, anything else as it is."""
    line = record_failure(output_dir, error)
    if isinstance(root_cause(error), INPUT_ERRORS):
        raise RunFailed(line) from error
    raise error


def portable_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved ``model`` and ``data`` configs as plain values: what a checkpoint needs to be
    rebuilt without its run directory."""
    return {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "data")}


# Config groups that say where and how a run is recorded, not what is trained: left out of HParams.
NOT_HPARAMS = ("paths", "hydra", "callbacks", "logger")


def hparams_of(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus bookkeeping groups: what TensorBoard's HParams tab lists per run."""
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in NOT_HPARAMS}


@rank_zero_only
def log_hparams_with_metrics(
    loggers: list[Any], params: Mapping[str, Any], metrics: Mapping[str, float], step: int
) -> None:
    """Register the run's hyper-parameters *and* its final metrics for TensorBoard's HParams tab.

    The tab only shows metric columns whose keys were registered with the hparams summary, so this
    runs once at the end, when the metric names are known. ``step`` must be the last logged step:
    TensorBoard drops a tag's later points when an earlier step is written, which would erase the
    ``val/*`` curves if the final values were written at step 0 (Lightning's default).
    """
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(dict(params), metrics=dict(metrics), step=step)
            logger.experiment.close()  # the Trainer closed it after test; this write reopened it


def fresh_dir(path: str) -> str:
    """``path``, else ``path_2``, ``path_3``, ...: the first that does not exist yet, created here and
    now, so that two runs started in the same second never share (or overwrite) a directory."""
    candidate, number = Path(path), 1
    while True:
        try:
            candidate.mkdir(parents=True)  # fails if it exists: claiming it is atomic
            return str(candidate)
        except FileExistsError:
            number += 1
            candidate = Path(f"{path}_{number}")


# conf/hydra/default.yaml names run and sweep dirs with it. Cached: the name is chosen once per run (Hydra
# copies the cache into every job of a sweep), however often the config is resolved.
if not OmegaConf.has_resolver("fresh_dir"):
    OmegaConf.register_new_resolver("fresh_dir", fresh_dir, use_cache=True)


class MakeSweepDir(Callback):
    """Hydra callback: create ``hydra.sweep.dir`` before the sweeper starts.

    The Optuna sweeper opens its SQLite study (``sqlite:///${hydra.sweep.dir}/optuna.db``) before any
    job has created the sweep dir, and SQLite cannot create the folder itself.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
