"""The net-data contract: a net built for other sizes than its data is refused before the first step,
in one line that names both keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from src.checks import ConfigError
from src.models.tasks import SequenceRegressionTask, TokenSeq2SeqTask
from src.train import train

MISMATCHES = [
    (["model=seq2seq", "data=increment", "model.net.vocab_size=50"], "model.net.vocab_size=50 but data.vocab_size=101"),
    (["model=seq2seq", "data=increment", "model.net.pad_id=3"], "model.net.pad_id=3 but data.pad_id=0"),
    (["model=seq2seq", "data=increment", "model.net.eos_id=4"], "model.net.eos_id=4 but data.eos_id=2"),
    (["model=seq2seq", "data=increment", "model.net.bos_id=5"], "model.net.bos_id=5 but data.bos_id=1"),
    (["model=repeat_vector", "data=seeded", "model.net.n_features=2"], "model.net.n_features=2 but data.n_features=1"),
    (
        ["model=encdec_ad", "data=seeded", "model.net.target_length=7"],
        "model.net.target_length=7 but data.target_length=5",
    ),
    (["model=stacked_lstm", "data=anomaly", "model.net.n_features=3"], "model.net.n_features=3 but data.n_features=4"),
]


@pytest.mark.parametrize("overrides,message", MISMATCHES, ids=[m[0][-1] for m in MISMATCHES])
def test_net_and_data_that_disagree_fail_before_the_first_step(
    make_cfg, tmp_path: Path, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        train(make_cfg(*overrides, "logger=csv"))
    assert str(info.value).startswith(message) and len(str(info.value).splitlines()) == 1, info.value
    assert not list(tmp_path.glob("**/*.ckpt")) and not (tmp_path / "metrics.json").exists()


class Undeclared(nn.Module):
    """A net that forgot to say what it was built for."""

    def forward(self, src: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return src


@pytest.mark.parametrize(
    "task,missing",
    [(SequenceRegressionTask, "n_features, reconstructs, target_length"), (TokenSeq2SeqTask, "bos_id, decode, eos_id")],
)
def test_a_net_that_declares_nothing_is_refused_when_the_task_is_built(task: type, missing: str) -> None:
    with pytest.raises(ConfigError, match=rf"model.net._target_=Undeclared lacks {missing}"):
        task(Undeclared(), optimizer=lambda params: torch.optim.Adam(params))
