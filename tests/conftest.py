"""Compose the Hydra config once per test, shrunk so that a run takes seconds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from src.quiet import silence_library_noise

ROOT = Path(__file__).resolve().parents[1]

# These nets are too small for intra-op parallelism to pay; with two threads on a 2-core machine
# that is busy with anything else, the threads spin against each other and a step gets many
# times slower.
torch.set_num_threads(1)
CONF_DIR = str(ROOT / "conf")


def config_options(group: str) -> list[str]:
    """The option names of a config group, e.g. every ``conf/model/*.yaml``."""
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """The composed config with its run dir at ``output_dir`` and hydra's own keys resolved away."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
    return cfg


QUIET = [
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
]
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",  # fewer steps than the default interval: Lightning would warn
    *QUIET,
]


@pytest.fixture(autouse=True)
def quiet_libraries() -> None:
    """The library messages src/quiet.py silences in a run, silenced in every test: pytest gives each
    test (and collection) its own warning filters, so those installed on import do not last."""
    silence_library_noise()


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg("model=x", "data=y", tiny=True)``: a train config writing under ``tmp_path``.

    ``tiny`` cuts the run to a few batches; otherwise the run is only made quiet (no progress bar).
    """

    def make(*overrides: str, tiny: bool = True, config_name: str = "train") -> DictConfig:
        extra = (TINY if tiny else QUIET) if config_name == "train" else []
        return compose_config(config_name, [*extra, *overrides], tmp_path)

    return make
