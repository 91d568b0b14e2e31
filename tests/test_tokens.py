"""Token datasets: each task's rule, padding, config checks, and the bucketing loader."""

from __future__ import annotations

import pytest
import torch

from src.data.tokens import BucketBatchLoader, TokenDataModule, make_token_batch


def rows(batch, k: int) -> tuple[list[int], list[int]]:
    s_len, t_len = int(batch.src_lengths[k]), int(batch.tgt_lengths[k])
    return batch.src[k, :s_len].tolist(), batch.tgt[k, :t_len].tolist()


@pytest.mark.parametrize(
    "task,rule",
    [
        ("increment", lambda s: [x + 1 for x in s]),
        ("copy", lambda s: list(s)),
        ("reverse", lambda s: s[::-1]),
        ("sort", lambda s: sorted(s)),
    ],
)
def test_each_task_follows_its_rule_and_ends_in_eos(task: str, rule) -> None:
    batch = make_token_batch(200, task, 5, 15, 3, 99, torch.Generator().manual_seed(1))
    assert batch.src.dtype == torch.int64 and batch.tgt.dtype == torch.int64
    assert torch.equal(batch.tgt_lengths, batch.src_lengths + 1)
    for k in range(batch.size):
        src, tgt = rows(batch, k)
        assert tgt == rule(src) + [2]
        assert all(3 <= x <= 99 for x in src)
        # everything past the lengths is padding
        assert (batch.src[k, len(src) :] == 0).all() and (batch.tgt[k, len(tgt) :] == 0).all()


def test_lengths_span_min_to_max_and_tokens_fit_the_vocabulary() -> None:
    dm = TokenDataModule(
        task="increment", vocab_size=101, min_len=5, max_len=15, n_train=2000, n_val=5, n_test=5, src_eos=False
    )
    dm.setup()
    train = dm.splits["train"]
    assert set(train.src_lengths.tolist()) == set(range(5, 16))
    assert int(train.tgt.max()) <= 100 and int(train.src[train.src != 0].min()) >= 3


def test_same_seed_same_data_and_eval_on_train_reuses_the_train_split() -> None:
    a, b = TokenDataModule(n_train=50, seed=4), TokenDataModule(n_train=50, seed=4)
    a.setup(), b.setup()
    assert torch.equal(a.splits["train"].src, b.splits["train"].src)
    assert not torch.equal(a.splits["train"].src[:50], a.splits["test"].src[:50])
    c = TokenDataModule(n_train=50, eval_on="train")
    c.setup()
    assert c.splits["val"] is c.splits["train"] and c.splits["test"] is c.splits["train"]


@pytest.mark.parametrize(
    "kwargs,keys",
    [
        ({"task": "increment", "max_word": 100, "vocab_size": 101}, "data.max_word \\+ 1 < data.vocab_size"),
        ({"task": "copy", "max_word": 101, "vocab_size": 101}, "data.max_word"),
        ({"task": "shuffle"}, "data.task"),
        ({"min_len": 6, "max_len": 5}, "data.min_len"),
        ({"first_word": 2}, "data.first_word"),
        ({"eval_on": "val"}, "data.eval_on"),
        ({"n_train": 0}, "data.n_train"),
        ({"bos_id": 0}, "data.pad_id"),
    ],
)
def test_bad_config_names_its_keys(kwargs: dict, keys: str) -> None:
    with pytest.raises(ValueError, match=keys):
        TokenDataModule(**kwargs)


def test_bucketing_groups_similar_lengths_trims_padding_and_covers_the_split_once() -> None:
    data = make_token_batch(1000, "copy", 5, 20, 3, 100, torch.Generator().manual_seed(0))
    loader = BucketBatchLoader(data, batch_size=64, shuffle=True, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 16
    seen = torch.cat([b.src_lengths for b in batches])
    assert sorted(seen.tolist()) == sorted(data.src_lengths.tolist())
    for b in batches:
        assert b.src.shape[1] == int(b.src_lengths.max()) and b.tgt.shape[1] == int(b.tgt_lengths.max())
        assert int(b.src_lengths.max() - b.src_lengths.min()) <= 2
    padding = sum(int((b.src == 0).sum()) for b in batches) / sum(b.src.numel() for b in batches)
    assert padding < 0.05
    # batch order and membership change between epochs
    again = [b.src_lengths.tolist() for b in loader]
    assert again != [b.src_lengths.tolist() for b in batches]


def test_bucketing_shards_disjointly_under_ddp() -> None:
    data = make_token_batch(300, "copy", 5, 20, 3, 100, torch.Generator().manual_seed(0))
    data = data._replace(src_lengths=torch.arange(300))  # a unique id per example
    shares = [
        torch.cat([b.src_lengths for b in BucketBatchLoader(data, 32, shuffle=True, seed=3, rank=r, world_size=2)])
        for r in (0, 1)
    ]
    assert len(BucketBatchLoader(data, 32, world_size=2)) == 5
    assert set(shares[0].tolist()).isdisjoint(shares[1].tolist())


def test_datamodule_serves_bucketed_or_plain_batches() -> None:
    dm = TokenDataModule(n_train=300, n_val=20, n_test=20, batch_size=32)
    assert isinstance(dm.train_dataloader(), BucketBatchLoader)
    plain = TokenDataModule(n_train=300, n_val=20, n_test=20, batch_size=32, bucketing=False)
    batch = next(iter(plain.train_dataloader()))
    assert batch.src.shape == (32, 16)  # 15 tokens + the source's eos


def test_bucketed_val_batches_use_eval_batch_size() -> None:
    dm = TokenDataModule(n_train=300, n_val=100, n_test=20, batch_size=32, eval_batch_size=50)
    assert sorted(b.size for b in dm.val_dataloader()) == [50, 50]


@pytest.mark.parametrize("task", ["increment", "reverse"])
def test_src_eos_ends_the_source_and_leaves_the_target_alone(task: str) -> None:
    plain = make_token_batch(50, task, 5, 15, 3, 99, torch.Generator().manual_seed(2))
    marked = make_token_batch(50, task, 5, 15, 3, 99, torch.Generator().manual_seed(2), src_eos=True)
    assert torch.equal(marked.tgt, plain.tgt) and torch.equal(marked.src_lengths, plain.src_lengths + 1)
    for k in range(50):
        src, _ = rows(marked, k)
        assert src == rows(plain, k)[0] + [2]


def test_decode_shows_tokens_up_to_eos() -> None:
    dm = TokenDataModule()
    assert dm.decode(torch.tensor([5, 6, 2, 0, 0])) == "5 6 </s>"
