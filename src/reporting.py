"""What the scripts share to run the lab in-process and print what they measured."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

# Endings of metric names that are better higher; every other metric (a loss, mse, mae, ...) is better lower.
HIGHER_IS_BETTER = ("skill", "accuracy", "exact_match", "f_beta", "f1", "precision", "recall", "auroc", "auprc")


def higher_is_better(metric: str) -> bool:
    """Whether ``metric`` (``stage/name``) is maximised: by compare.py, and by the checkpoint and the
    plateau scheduler when it is ``model.monitor``; Optuna's ``direction`` must agree with this."""
    return metric.rsplit("/", 1)[-1].endswith(HIGHER_IS_BETTER)


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_train_config(overrides: Sequence[str], output_dir: str | Path) -> DictConfig:
    """The config ``python -m src.train <overrides>`` would run, writing into ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            config_name="train", overrides=[*overrides, f"paths.output_dir={output_dir}", f"paths.log_dir={output_dir}"]
        )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table, without a trailing newline."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def mean_and_range(values: Sequence[float], digits: int = 3) -> str:
    """``mean`` for one value, ``mean (min..max)`` for several; ``-`` where not measured."""
    if not values or values[0] != values[0]:  # empty, or NaN
        return "-"
    mean = f"{sum(values) / len(values):.{digits}f}"
    return mean if len(values) == 1 else f"{mean} ({min(values):.{digits}f}..{max(values):.{digits}f})"
