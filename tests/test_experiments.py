"""Every ``conf/experiment/*.yaml`` composes, for every model/data its sweep names, and trains a few batches."""

from __future__ import annotations

import itertools
import math

import hydra
import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import ROOT, config_options

GROUPS = ("data", "model")


def experiment_yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / "conf" / "experiment" / f"{name}.yaml").read_text()) or {}


def group_choices(name: str) -> dict[str, list[str]]:
    """The data/model options an experiment selects: its defaults, widened by its ``hydra.sweeper.params``."""
    spec = experiment_yaml(name)
    choices: dict[str, list[str]] = {}
    for entry in spec.get("defaults", []):
        for key, option in entry.items() if isinstance(entry, dict) else []:
            group = key.replace("override", "").strip().strip("/")
            if group in GROUPS:
                choices[group] = [option]
    params = ((spec.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    for group in GROUPS:
        if group in params:
            choices[group] = [v.strip() for v in str(params[group]).split(",")]
    return choices


def missing_configs(choices: dict[str, list[str]]) -> list[str]:
    return [
        f"conf/{g}/{o}.yaml"
        for g, options in choices.items()
        for o in options
        if not (ROOT / "conf" / g / f"{o}.yaml").is_file()
    ]


def checked_choices(name: str) -> dict[str, list[str]]:
    """The experiment's model/data options, every one of which must exist."""
    choices = group_choices(name)
    missing = missing_configs(choices)
    assert not missing, f"experiment={name} names {', '.join(missing)}, which do not exist"
    return choices


EXPERIMENTS = config_options("experiment")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_says_what_it_shows(name: str) -> None:
    """Each experiment starts with a comment: the question it reproduces and how to run it."""
    text = (ROOT / "conf" / "experiment" / f"{name}.yaml").read_text()
    comments = [line for line in text.splitlines() if line.startswith("#") and "@package" not in line]
    assert comments, f"conf/experiment/{name}.yaml has no comment saying what it shows"
    assert text.startswith("# @package _global_"), f"conf/experiment/{name}.yaml must be '# @package _global_'"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_for_every_swept_model_and_data(make_cfg, name: str) -> None:
    """Every combination the experiment's sweep runs composes and instantiates (interpolations resolve)."""
    choices = checked_choices(name)
    params = ((experiment_yaml(name).get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    groups = sorted(choices)
    for combination in itertools.product(*(choices[g] for g in groups)):
        overrides = [f"experiment={name}", *(f"{g}={o}" for g, o in zip(groups, combination))]
        cfg = make_cfg(*overrides)
        OmegaConf.resolve(cfg)
        hydra.utils.instantiate(cfg.data)
        module = hydra.utils.instantiate(cfg.model)
        assert sum(p.numel() for p in module.parameters()) > 0, overrides
        assert cfg.optimized_metric.startswith(("val/", "test/")), f"{name}: optimized_metric={cfg.optimized_metric}"
        for key in params:
            if key not in GROUPS:
                assert OmegaConf.select(cfg, key, default=KeyError) is not KeyError, (
                    f"{name}: hydra.sweeper.params.{key} is not a config key"
                )


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_trains_and_reports_its_optimized_metric(make_cfg, name: str) -> None:
    """A few batches of the experiment's default run; main() could return its optimized_metric."""
    checked_choices(name)
    from src import runtime
    from src.train import train

    cfg = make_cfg(f"experiment={name}")
    metrics = train(cfg)
    value = runtime.metric_value(metrics, cfg.optimized_metric)
    assert value is not None and not math.isnan(value)
