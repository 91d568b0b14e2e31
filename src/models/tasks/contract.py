"""What a task relies on in the net it trains and in the data it trains on.

Nets (``src/models/nets``) and datamodules (``src/data``) know nothing of each other: each declares
the attributes below, and the task checks them against each other once, in ``setup``, before the
first step (``check_net_fits_data``). A net that lacks one is refused when the task is built.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from src.checks import check_declares, check_same
from src.data.batch import SeqBatch
from src.models.nets.decoding import Decoded


@runtime_checkable
class SeqBatchData(Protocol):
    """What every task and callback reads of a datamodule (``SplitsDataModule`` provides it)."""

    batch_kind: str  # "real" or "tokens": what src and tgt hold
    tgt_offset: int  # where the target starts relative to the source (0: reconstruction)
    evaluates_on_train: bool  # val and test are copies of the train split

    def setup(self, stage: str | None = None) -> None: ...

    def examples(self, split: str, n: int) -> SeqBatch: ...

    def split_size(self, split: str) -> int: ...

    def examples_in_batches(self, n_batches: int) -> int: ...


@runtime_checkable
class RealValuedData(SeqBatchData, Protocol):
    n_features: int  # tgt is (B, target_length, n_features)
    target_length: int

    def target_mean(self) -> torch.Tensor: ...

    def targets_padded(self) -> bool: ...


@runtime_checkable
class TokenData(SeqBatchData, Protocol):
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int

    def decode(self, tokens: torch.Tensor) -> str: ...


@runtime_checkable
class RealValuedNet(Protocol):
    """``net(src, src_lengths, tgt, teacher_forcing=..., tgt_lengths=...)`` -> a prediction shaped like ``tgt``."""

    n_features: int
    target_length: int
    reconstructs: bool  # rebuilds its input when tgt = src (the anomaly task needs it)

    def __call__(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
        tgt_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


@runtime_checkable
class TokenNet(Protocol):
    """``net(src, src_lengths, tgt, teacher_forcing=...)`` -> logits (B, T, V); ``decode`` -> ``Decoded``."""

    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    has_attention: bool

    def __call__(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt: torch.Tensor, teacher_forcing: float = 1.0
    ) -> torch.Tensor: ...

    def decode(self, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int, beam_size: int = 1) -> Decoded: ...


def check_net_declares(net: Any, contract: type) -> None:
    """The net built from ``model.net`` has every attribute and method of ``contract``."""
    check_declares("model.net", net, contract)


def check_net_fits_data(net: Any, datamodule: Any, data_contract: type, shared: tuple[str, ...]) -> None:
    """The datamodule honours ``data_contract``, and every size in ``shared`` (normally interpolated from
    ``data``) is the same on the net and on the data: a one-line error naming both keys otherwise."""
    check_declares("data", datamodule, data_contract)
    datamodule.setup()
    for name in shared:
        check_same(f"model.net.{name}", getattr(net, name), f"data.{name}", getattr(datamodule, name))
