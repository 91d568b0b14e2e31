"""The hidden-state saturation callback: its number on hand-built states, and that it finds every recurrent layer."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from src.callbacks.saturation import HiddenSaturation, measure_saturation, saturation_fraction
from src.models.nets import recurrent_layers
from src.models.nets.recurrent import ActivatedLSTM, make_recurrent


def saturated_rnn() -> nn.RNN:
    """A tanh RNN whose 4 units read x * (100, -100, 0.5, 0): for x = 1 two are saturated at +-1."""
    rnn = nn.RNN(1, 4, batch_first=True)
    with torch.no_grad():
        for p in rnn.parameters():
            p.zero_()
        rnn.weight_ih_l0.copy_(torch.tensor([[100.0], [-100.0], [0.5], [0.0]]))
    return rnn


def test_fraction_on_a_hand_built_state() -> None:
    h = torch.tensor([[0.999, -0.995, 0.5, 0.0], [1.0, -1.0, 0.99, -0.2]])
    assert saturation_fraction(h) == pytest.approx(4 / 8)  # 0.99 itself is not > 0.99
    assert saturation_fraction(h, limit=0.4) == pytest.approx(6 / 8)


def test_callback_measures_a_saturated_rnn_exactly() -> None:
    model = nn.Module()
    model.encoder = saturated_rnn()
    x = torch.ones(3, 5, 1)
    measured = measure_saturation(model, lambda: model.encoder(x))
    fraction, values = measured["encoder"]
    assert fraction == pytest.approx(0.5)  # units 0 and 1 of every example and step
    assert values.numel() == 3 * 5 * 4
    # hooks are gone afterwards
    assert not model.encoder._forward_hooks


def test_packed_sequences_count_only_valid_steps() -> None:
    model = nn.Module()
    model.rnn = saturated_rnn()
    x = torch.ones(2, 6, 1)
    x[1, 2:] = 0.0  # padding after step 2: would count as unsaturated if it were seen
    packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([6, 2]), batch_first=True, enforce_sorted=False)
    fraction, values = measure_saturation(model, lambda: model.rnn(packed))["rnn"]
    assert values.numel() == (6 + 2) * 4 and fraction == pytest.approx(0.5)


def test_every_recurrent_kind_of_the_lab_is_found() -> None:
    model = nn.Module()
    model.a = make_recurrent("lstm", 3, 4, activation="relu")  # ActivatedLSTM
    model.b = make_recurrent("gru", 3, 4)
    model.c = nn.Sequential(make_recurrent("rnn", 3, 4), nn.Linear(4, 1))
    found = recurrent_layers(model)
    assert set(found) == {"a", "b", "c.0"} and isinstance(found["a"], ActivatedLSTM)
    x = torch.randn(2, 5, 3)
    measured = measure_saturation(model, lambda: [model.a(x), model.b(x), model.c[0](x)])
    assert set(measured) == {"a", "b", "c.0"}


def test_warns_once_above_the_threshold(caplog) -> None:
    callback = HiddenSaturation(warn_above=0.4)
    with caplog.at_level(logging.WARNING, logger="src.callbacks.saturation"):
        callback.check({"net.encoder.rnn": 0.5, "net.decoder.rnn": 0.1}, epoch=3)
        callback.check({"net.encoder.rnn": 0.9}, epoch=4)
    warnings = [r for r in caplog.records if "saturate" in r.getMessage()]
    assert len(warnings) == 1 and "net.encoder.rnn 50%" in warnings[0].getMessage()
    assert "net.decoder.rnn" not in warnings[0].getMessage()


def test_bad_settings_name_their_keys() -> None:
    with pytest.raises(ValueError, match="callbacks.saturation.limit"):
        HiddenSaturation(limit=1.5)
    with pytest.raises(ValueError, match="callbacks.saturation.every_n_epochs"):
        HiddenSaturation(every_n_epochs=0)


def test_works_on_a_real_valued_model_run(make_cfg, tmp_path) -> None:
    """Usable with every recurrent model: the default real-valued model, via the saturation config."""
    from src.train import train

    train(make_cfg("callbacks=[default,saturation]", "callbacks.saturation.n_examples=8"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert any(t.startswith("saturation/net.encoder") for t in events.Tags()["scalars"])
