"""The private Lightning names the lab relies on (src/lightning_internals.py) are still there."""

from __future__ import annotations

import importlib
import inspect

import pytest
import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from src.lightning_internals import CHECKPOINT_HOOKS, RELIED_ON

ADVICE = "adapt src/lightning_internals.py to it, or keep pytorch-lightning below this version in pyproject.toml"


def owner(where: str) -> object:
    if where == "LightningModule":
        return pl.LightningModule()
    if where == "ModelCheckpoint":
        return ModelCheckpoint()
    if where == "Trainer":
        return pl.Trainer(
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
        )
    return importlib.import_module(where)


@pytest.mark.parametrize("where,name", RELIED_ON, ids=[f"{w}.{n}" for w, n in RELIED_ON])
def test_private_lightning_names_the_lab_relies_on_still_exist(where: str, name: str) -> None:
    found = owner(where)
    for part in name.split("."):
        if not hasattr(found, part):
            pytest.fail(f"pytorch-lightning {pl.__version__} has no {where}.{name} any more: {ADVICE}")
        found = getattr(found, part)


@pytest.mark.parametrize("name", CHECKPOINT_HOOKS)
def test_overridden_checkpoint_hooks_keep_their_parameters(name: str) -> None:
    parameters = tuple(inspect.signature(getattr(ModelCheckpoint, name)).parameters)
    assert parameters == CHECKPOINT_HOOKS[name], (
        f"pytorch-lightning {pl.__version__} changed ModelCheckpoint.{name}{parameters}, which "
        f"LastAndBestCheckpoint overrides or calls as {CHECKPOINT_HOOKS[name]}: {ADVICE}"
    )
