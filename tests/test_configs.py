"""Every model composes and instantiates with every dataset it pairs with."""

from __future__ import annotations

import hydra
import pytest

from tests.conftest import config_options

# Series datasets put the anomaly task around the model and read files: tests/test_anomaly.py covers them.
SERIES_DATA = ("anomaly", "csv")
PAIRS = [(m, d) for m in config_options("model") for d in config_options("data") if d not in SERIES_DATA]


def pairs_with(model: str, data: str) -> bool:
    """Token models pair with token data, real-valued models with real-valued data."""
    from tests.conftest import ROOT

    token_model = "vocab_size" in (ROOT / "conf" / "model" / f"{model}.yaml").read_text()
    token_data = "vocab_size" in (ROOT / "conf" / "data" / f"{data}.yaml").read_text()
    return token_model == token_data


@pytest.mark.parametrize("model,data", [p for p in PAIRS if pairs_with(*p)])
def test_model_and_data_compose_and_instantiate(make_cfg, model: str, data: str) -> None:
    cfg = make_cfg(f"model={model}", f"data={data}")
    datamodule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.model)
    assert sum(p.numel() for p in module.parameters()) > 0
    datamodule.setup("fit")
    assert datamodule.splits["train"].size == cfg.data.n_train
    # what the datamodule declares (and the net was built for) is what its batches hold
    batch = datamodule.examples("train", 4)
    if datamodule.batch_kind == "real":
        assert batch.tgt.shape[1:] == (datamodule.target_length, datamodule.n_features)
        assert (module.net.n_features, module.net.target_length) == (datamodule.n_features, datamodule.target_length)
    else:
        assert int(batch.src.max()) < datamodule.vocab_size and int(batch.tgt.max()) < datamodule.vocab_size
        assert module.net.vocab_size == datamodule.vocab_size


@pytest.mark.parametrize("name", [n for n in config_options("trainer")])
def test_trainer_configs_compose(make_cfg, name: str) -> None:
    cfg = make_cfg(f"trainer={name}")
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


@pytest.mark.parametrize("name", config_options("debug"))
def test_debug_configs_compose(make_cfg, name: str) -> None:
    cfg = make_cfg(f"debug={name}", tiny=False)
    assert cfg.task_name == "debug"


def test_eval_config_composes(make_cfg) -> None:
    cfg = make_cfg("ckpt_path=x.ckpt", config_name="eval")
    assert cfg.ckpt_path == "x.ckpt"
