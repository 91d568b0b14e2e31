"""Token sequence tasks of question 2's seq2seq post: increment, reverse, copy, sort.

Every example draws a length in [min_len, max_len] and that many tokens; the target is a pure
function of the source, followed by ``eos_id``. Both are right-padded with ``pad_id``. The
decoder's input (``bos_id`` then the target shifted right) is built by the net, not stored here.

Batches are grouped by source length (``BucketBatchLoader``) so that little compute goes to padding.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from typing_extensions import override

from src.data.batch import SeqBatch
from src.data.module import SequenceDataModule, TensorBatchLoader
from src.masks import length_mask

TASKS = ("increment", "reverse", "copy", "sort")
EVAL_ON = ("held_out", "train")


def token_targets(tokens: torch.Tensor, lengths: torch.Tensor, task: str) -> torch.Tensor:
    """The target of ``task`` for each padded row of ``tokens`` (N, L), without eos: (N, L).

    Positions past a row's length hold zeros; callers pad and append eos.
    """
    n, width = tokens.shape
    valid = length_mask(lengths, width)
    if task == "increment":
        out = tokens + 1
    elif task == "copy":
        out = tokens.clone()
    elif task == "reverse":
        # position t of row i reads source position len_i - 1 - t
        index = (lengths[:, None] - 1 - torch.arange(width)[None, :]).clamp(min=0)
        out = tokens.gather(1, index)
    elif task == "sort":
        big = torch.iinfo(tokens.dtype).max
        out = tokens.masked_fill(~valid, big).sort(dim=1).values
    else:
        raise ValueError(f"data.task={task!r} is not one of {TASKS}")
    return out.masked_fill(~valid, 0)


def make_token_batch(
    n: int,
    task: str,
    min_len: int,
    max_len: int,
    first_word: int,
    max_word: int,
    generator: torch.Generator,
    pad_id: int = 0,
    eos_id: int = 2,
    src_eos: bool = False,
) -> SeqBatch:
    """``n`` random examples of ``task``: src (n, max_len), tgt (n, max_len + 1) ending in eos.

    ``src_eos`` appends eos to the source as well (src (n, max_len + 1), lengths + 1), as NMT
    toolkits do: it gives attention an explicit end-of-source position to look at.
    """
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator)
    tokens = torch.randint(first_word, max_word + 1, (n, max_len), generator=generator)
    valid = length_mask(lengths, max_len)
    src = tokens.masked_fill(~valid, pad_id)
    body = token_targets(src, lengths, task).masked_fill(~valid, pad_id)
    pad_column = torch.full((n, 1), pad_id, dtype=torch.long)
    tgt = torch.cat([body, pad_column], dim=1).scatter_(1, lengths[:, None], eos_id)
    if src_eos:
        src = torch.cat([src, pad_column], dim=1).scatter_(1, lengths[:, None], eos_id)
        return SeqBatch(src=src, src_lengths=lengths + 1, tgt=tgt, tgt_lengths=lengths + 1)
    return SeqBatch(src=src, src_lengths=lengths, tgt=tgt, tgt_lengths=lengths + 1)


class BucketBatchLoader:
    """Yields ``SeqBatch`` slices of examples of similar source length, trimmed to the batch's
    longest source and target, so that padding costs little compute.

    Examples are sorted by source length (after a random permutation when shuffling, so ties are
    broken differently every epoch), cut into batches by whole-tensor indexing, and the batch
    order is shuffled. Under DDP every rank draws the same batch list and takes every
    ``world_size``-th batch, an equal, disjoint share.
    """

    def __init__(
        self,
        data: SeqBatch,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.data, self.batch_size, self.shuffle = data, batch_size, shuffle
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.n_batches = -(-data.size // batch_size)

    def __len__(self) -> int:
        return self.n_batches // self.world_size if self.world_size > 1 else self.n_batches

    def __iter__(self) -> Iterator[SeqBatch]:
        n = self.data.size
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order[torch.argsort(self.data.src_lengths[order], stable=True)]
        batches = list(order.split(self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator)]
        if self.world_size > 1:
            batches = batches[self.rank :: self.world_size][: len(self)]
        for idx in batches:
            yield self.data.index(idx).trimmed()


class TokenDataModule(SequenceDataModule):
    """Random token sequences and their ``task`` target, as int64 (B, S) / (B, T) batches.

    ``eval_on='train'`` makes the val and test splits copies of the train split: the post's
    check whether a model can memorise its ``n_train`` examples at all.
    """

    batch_kind = "tokens"

    def __init__(
        self,
        task: str = "increment",
        vocab_size: int = 101,
        min_len: int = 5,
        max_len: int = 15,
        first_word: int = 3,
        max_word: int | None = None,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        eval_on: str = "held_out",
        src_eos: bool = True,
        bucketing: bool = True,
        n_train: int = 5000,
        n_val: int = 500,
        n_test: int = 1000,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        seed: int = 0,
        on_device: bool = False,
    ) -> None:
        super().__init__(n_train, n_val, n_test, batch_size, seed, eval_batch_size, on_device)
        if task not in TASKS:
            raise ValueError(f"data.task={task!r} is not one of {TASKS}")
        if eval_on not in EVAL_ON:
            raise ValueError(f"data.eval_on={eval_on!r} is not one of {EVAL_ON}")
        specials = {"data.pad_id": pad_id, "data.bos_id": bos_id, "data.eos_id": eos_id}
        if len(set(specials.values())) != 3:
            raise ValueError(f"{specials} must be three different ids")
        if not 1 <= min_len <= max_len:
            raise ValueError(
                f"data.min_len={min_len} and data.max_len={max_len} need 1 <= data.min_len <= data.max_len"
            )
        if first_word <= max(specials.values()):
            raise ValueError(
                f"data.first_word={first_word} must be above the special ids "
                f"(data.pad_id, data.bos_id, data.eos_id = {pad_id}, {bos_id}, {eos_id})"
            )
        # increment maps the largest word w to w + 1, which must still be a word of the vocabulary
        top = vocab_size - (2 if task == "increment" else 1)
        max_word = top if max_word is None else int(max_word)
        if task == "increment" and not max_word + 1 < vocab_size:
            raise ValueError(
                f"data.task=increment needs data.max_word + 1 < data.vocab_size, "
                f"got data.max_word={max_word}, data.vocab_size={vocab_size}"
            )
        if not max_word < vocab_size:
            raise ValueError(f"data.max_word={max_word} must be < data.vocab_size={vocab_size}")
        if max_word < first_word:
            raise ValueError(f"data.max_word={max_word} must be >= data.first_word={first_word}")
        self.task, self.vocab_size = task, int(vocab_size)
        self.min_len, self.max_len = int(min_len), int(max_len)
        self.first_word, self.max_word = int(first_word), max_word
        self.pad_id, self.bos_id, self.eos_id = int(pad_id), int(bos_id), int(eos_id)
        self.eval_on, self.bucketing, self.src_eos = eval_on, bool(bucketing), bool(src_eos)

    def generate(self, n: int, generator: torch.Generator) -> SeqBatch:
        return make_token_batch(
            n,
            self.task,
            self.min_len,
            self.max_len,
            self.first_word,
            self.max_word,
            generator,
            self.pad_id,
            self.eos_id,
            self.src_eos,
        )

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        super().setup(stage)
        if self.eval_on == "train":
            self.splits["val"] = self.splits["test"] = self.splits["train"]

    @property
    @override
    def evaluates_on_train(self) -> bool:
        return self.eval_on == "train"

    def loader_class(self) -> type:
        return BucketBatchLoader if self.bucketing else TensorBatchLoader

    def decode(self, tokens: torch.Tensor) -> str:
        """One row of ids as text, stopping at eos (shown as ``</s>``), padding dropped."""
        words = []
        for token in tokens.tolist():
            if token == self.pad_id:
                continue
            if token == self.eos_id:
                words.append("</s>")
                break
            words.append("<s>" if token == self.bos_id else str(token))
        return " ".join(words)


__all__ = ["TASKS", "BucketBatchLoader", "TokenDataModule", "make_token_batch", "token_targets"]
