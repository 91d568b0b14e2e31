"""Base DataModules: splits held in memory, served by whole-tensor indexing; generated ones from a seed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from typing_extensions import override

from src.data.batch import SeqBatch
from src.masks import length_mask


class TensorBatchLoader:
    """Yields ``SeqBatch`` slices of one in-memory split.

    Per-sample ``__getitem__`` plus collate costs more than these models do, so an epoch's order
    is gathered with one index per tensor and cut into batches. Under DDP each rank takes an
    equal, disjoint share of every epoch's permutation (every rank draws the same permutation
    from the same generator state).
    """

    def __init__(
        self,
        data: SeqBatch,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        subsample: int = 1,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.generator = torch.Generator().manual_seed(seed)
        # subsample = k: a shuffled epoch takes a fresh random 1/k of the examples (see SeriesDataModule).
        self.per_epoch = data.size // subsample if shuffle and subsample > 1 else data.size
        self.per_rank = self.per_epoch // world_size if world_size > 1 else self.per_epoch

    def __len__(self) -> int:
        return -(-self.per_rank // self.batch_size)

    def __iter__(self) -> Iterator[SeqBatch]:
        n = self.data.size
        order = torch.randperm(n, generator=self.generator)[: self.per_epoch] if self.shuffle else None
        if self.world_size > 1:
            base = order if order is not None else torch.arange(n)
            order = base[self.rank :: self.world_size][: self.per_rank]
        # One gather per epoch, not one per batch: the batches are slices (views) of it.
        data = self.data if order is None else self.data.index(order)
        for start in range(0, self.per_rank, self.batch_size):
            yield data.index(slice(start, start + self.batch_size))


class SplitsDataModule(pl.LightningDataModule):
    """Serves train/val/test ``SeqBatch`` splits held in memory (``self.splits``, filled by ``setup``).

    What a task may rely on (``src/models/tasks/contract.py``): ``batch_kind``, ``tgt_offset`` (the
    time index at which the target starts relative to the source: ``src_len`` for continuation, 0
    for reconstruction, which figures use to draw input and target on one axis), ``examples``,
    ``target_mean`` and ``targets_padded``. Real-valued subclasses also set ``n_features`` and
    ``target_length`` (what their batches hold); token subclasses ``vocab_size`` and the special ids.
    """

    tgt_offset: int = 0
    batch_kind = "real"  # what src/tgt hold; a task with another batch_kind cannot train on it

    @property
    def reconstructs(self) -> bool:
        """Whether the target is the source itself (reconstruction), not what follows it."""
        return self.tgt_offset == 0

    def __init__(self, batch_size: int, seed: int, eval_batch_size: int | None = None, on_device: bool = False) -> None:
        super().__init__()
        self.on_device = on_device
        eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        for key, value in dict(batch_size=batch_size, eval_batch_size=eval_batch_size).items():
            if int(value) < 1:
                raise ValueError(f"data.{key}={value} must be >= 1")
        # Validation and test need no gradients: larger batches mean fewer steps of the eval loop.
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.seed = int(seed)
        self.splits: dict[str, SeqBatch] = {}
        self._train_loader: TensorBatchLoader | None = None
        self._shuffle_state: torch.Tensor | None = None

    @staticmethod
    def check_declared(key: str, declared: int | None, actual: int) -> None:
        """Config keys such as ``data.n_features`` feed the model; they must say what the data is."""
        if declared is not None and int(declared) != actual:
            raise ValueError(f"data.{key}={declared} but this dataset makes {actual}; leave data.{key} at its default")

    def loader_class(self) -> type:
        """What cuts a split into batches: takes (split, batch_size, shuffle, seed, rank, world_size)."""
        return TensorBatchLoader

    def _loader(self, split: str, shuffle: bool):
        self.setup()
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        batch_size = self.batch_size if split == "train" else self.eval_batch_size
        data = self.splits[split]
        if self.on_device and trainer is not None:
            # The split moves once; the batches are then slices gathered on the device.
            data = self.splits[split] = data.to(trainer.strategy.root_device)
        loader = self.loader_class()(data, batch_size, shuffle=shuffle, seed=self.seed, rank=rank, world_size=world)
        if split == "train":
            if self._shuffle_state is not None:
                loader.generator.set_state(self._shuffle_state)
                self._shuffle_state = None
            self._train_loader = loader
        return loader

    @override
    def state_dict(self) -> dict[str, Any]:
        # Saved in every checkpoint: a resumed run's training loader goes on with the epoch orders
        # of the run it resumes, not from the first epoch's order again.
        return {} if self._train_loader is None else {"train_shuffle": self._train_loader.generator.get_state()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._shuffle_state = state_dict.get("train_shuffle")

    @override
    def transfer_batch_to_device(self, batch: SeqBatch, device: torch.device, dataloader_idx: int) -> SeqBatch:
        # Lightning's generic collection walk costs a noticeable share of a step this small.
        return batch.to(device)

    @override
    def train_dataloader(self) -> TensorBatchLoader:
        # Lightning turns shuffling off for overfit_batches only in a torch DataLoader; do it here.
        overfitting = self.trainer is not None and bool(self.trainer.overfit_batches)
        return self._loader("train", shuffle=not overfitting)

    @override
    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", shuffle=False)

    @override
    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", shuffle=False)

    def examples(self, split: str, n: int) -> SeqBatch:
        """The first ``n`` examples of ``split`` (fewer if it is smaller): the same ones every call."""
        self.setup()
        return self.splits[split].index(slice(0, n))

    def split_size(self, split: str) -> int:
        """How many examples ``split`` holds."""
        self.setup()
        return self.splits[split].size

    def examples_in_batches(self, n_batches: int) -> int:
        """How many training examples the first ``n_batches`` training batches hold."""
        return min(n_batches * self.batch_size, self.split_size("train"))

    @property
    def evaluates_on_train(self) -> bool:
        """Whether val and test are copies of the train split (a run that should memorise it)."""
        return False

    def targets_padded(self) -> bool:
        """Whether any target of any split is shorter than its padded width."""
        self.setup()
        return any(bool((split.tgt_lengths < split.tgt.shape[1]).any()) for split in self.splits.values())

    def target_mean(self) -> torch.Tensor:
        """Per-position mean of the training targets over valid (unpadded) positions: (T, F).

        This is the unconditional baseline of the skill score.
        """
        self.setup()
        train = self.splits["train"]
        tgt = train.tgt.float()
        mask = length_mask(train.tgt_lengths, tgt.shape[1]).float()
        mask = mask.view(*mask.shape, *([1] * (tgt.dim() - 2)))
        return (tgt * mask).sum(0) / mask.sum(0).clamp(min=1)


class SequenceDataModule(SplitsDataModule):
    """Generates every split once from ``seed``: subclasses implement ``generate(n, generator)``."""

    def __init__(
        self,
        n_train: int,
        n_val: int,
        n_test: int,
        batch_size: int,
        seed: int,
        eval_batch_size: int | None = None,
        on_device: bool = False,
    ) -> None:
        super().__init__(batch_size, seed, eval_batch_size, on_device)
        for key, value in dict(n_train=n_train, n_val=n_val, n_test=n_test).items():
            if int(value) < 1:
                raise ValueError(f"data.{key}={value} must be >= 1")
        self.n_train, self.n_val, self.n_test = int(n_train), int(n_val), int(n_test)

    def generate(self, n: int, generator: torch.Generator) -> SeqBatch:
        raise NotImplementedError

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        generator = torch.Generator().manual_seed(self.seed)
        for split, n in (("train", self.n_train), ("val", self.n_val), ("test", self.n_test)):
            self.splits[split] = self.generate(n, generator)
