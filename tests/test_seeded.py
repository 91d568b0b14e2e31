"""The seeded generator obeys its rule exactly, and its config is checked where it enters."""

from __future__ import annotations

import pytest
import torch

from src.data.seeded import SeededDataModule, seeded_sequences


@pytest.mark.parametrize("n_seeds,seed_index", [(4, 3), (5, 3), (8, 3), (8, 6), (2, 0)])
def test_last_seed_step_rule(n_seeds: int, seed_index: int) -> None:
    dm = SeededDataModule(
        n_seeds=n_seeds, seed_index=seed_index, step_factor=0.7, continuation_length=6, n_train=20, n_val=3, n_test=3
    )
    dm.setup()
    batch = dm.splits["train"]
    seeds, tgt = batch.src[..., 0], batch.tgt[..., 0]
    previous = seeds[:, -1]
    for t in range(6):
        expected = previous + 0.7 * seeds[:, seed_index]
        assert torch.equal(tgt[:, t], expected)
        previous = expected


@pytest.mark.parametrize("n_seeds", [2, 5, 9])
def test_ar2_rule(n_seeds: int) -> None:
    dm = SeededDataModule(
        n_seeds=n_seeds, rule="ar2", ar2_coef=0.2, continuation_length=5, n_train=20, n_val=3, n_test=3
    )
    dm.setup()
    batch = dm.splits["train"]
    full = torch.cat([batch.src[..., 0], batch.tgt[..., 0]], dim=1)
    for t in range(n_seeds, n_seeds + 5):
        assert torch.equal(full[:, t], full[:, t - 1] + 0.2 * full[:, t - 2])


def test_shapes_lengths_and_seed_range() -> None:
    dm = SeededDataModule(n_train=50, n_val=10, n_test=10)
    dm.setup()
    train = dm.splits["train"]
    assert train.src.shape == (50, 5, 1) and train.tgt.shape == (50, 5, 1)
    assert train.src.dtype == torch.float32 and train.src_lengths.dtype == torch.int64
    assert (train.src.abs() <= 1).all()
    assert (train.src_lengths == 5).all() and (train.tgt_lengths == 5).all()


def test_same_config_same_data_and_splits_differ() -> None:
    a, b = SeededDataModule(seed=3), SeededDataModule(seed=3)
    a.setup(), b.setup()
    assert torch.equal(a.splits["train"].src, b.splits["train"].src)
    assert not torch.equal(a.splits["train"].src[:100], a.splits["test"].src)


def test_batches_cover_the_split_once_per_epoch() -> None:
    dm = SeededDataModule(n_train=70, batch_size=32)
    seen = torch.cat([b.src for b in dm.train_dataloader()])
    assert len(dm.train_dataloader()) == 3
    assert torch.equal(seen.sort(0).values, dm.splits["train"].src.sort(0).values)


def test_val_and_test_batches_use_eval_batch_size() -> None:
    dm = SeededDataModule(n_val=100, n_test=100, batch_size=32, eval_batch_size=64)
    assert [b.size for b in dm.val_dataloader()] == [64, 36]
    assert [b.size for b in dm.test_dataloader()] == [64, 36]
    assert len(dm.train_dataloader()) == 32


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"seed_index": 5}, "data.seed_index"),
        ({"rule": "cubic"}, "data.rule"),
        ({"n_train": 0}, "data.n_train"),
        ({"eval_batch_size": 0}, "data.eval_batch_size"),
        ({"n_features": 2}, "data.n_features"),
        ({"target_length": 7}, "data.target_length"),
    ],
)
def test_bad_values_name_their_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        SeededDataModule(**kwargs)


def test_generator_rejects_unknown_rule() -> None:
    with pytest.raises(ValueError, match="data.rule"):
        seeded_sequences(torch.zeros(2, 5), 3, rule="nope")
