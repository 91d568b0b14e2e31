"""The seeded-continuation problem of the Flux post, done right.

Each example draws ``n_seeds`` values uniformly in [-1, 1]; the next ``continuation_length``
values follow a deterministic rule of the seeds. ``src`` is the seeds, ``tgt`` the continuation.
A model that only learns the per-position mean of the continuation scores skill 0.
"""

from __future__ import annotations

import torch

from src.data.batch import SeqBatch
from src.data.module import SequenceDataModule

RULES = ("last_seed_step", "ar2")


def seeded_sequences(
    seeds: torch.Tensor,
    continuation_length: int,
    rule: str = "last_seed_step",
    seed_index: int = 3,
    step_factor: float = 0.5,
    ar2_coef: float = 0.2,
) -> torch.Tensor:
    """Continue each row of ``seeds`` (N, n_seeds) by ``continuation_length`` values: (N, L).

    ``last_seed_step``: x[t] = x[t-1] + step_factor * seeds[seed_index].
    ``ar2``:            x[t] = x[t-1] + ar2_coef * x[t-2].
    """
    history = [seeds[:, -2], seeds[:, -1]]
    for _ in range(continuation_length):
        if rule == "last_seed_step":
            history.append(history[-1] + step_factor * seeds[:, seed_index])
        elif rule == "ar2":
            history.append(history[-1] + ar2_coef * history[-2])
        else:
            raise ValueError(f"data.rule={rule!r} is not one of {RULES}")
    return torch.stack(history[2:], dim=1)


class SeededDataModule(SequenceDataModule):
    """Seeds in, deterministic continuation out, as (B, len, 1) float32 sequences."""

    def __init__(
        self,
        n_seeds: int = 5,
        continuation_length: int = 5,
        rule: str = "last_seed_step",
        seed_index: int = 3,
        step_factor: float = 0.5,
        ar2_coef: float = 0.2,
        n_train: int = 1000,
        n_val: int = 100,
        n_test: int = 100,
        batch_size: int = 32,
        eval_batch_size: int = 256,
        seed: int = 0,
        on_device: bool = False,
        n_features: int | None = None,
        target_length: int | None = None,
    ) -> None:
        super().__init__(n_train, n_val, n_test, batch_size, seed, eval_batch_size, on_device)
        if rule not in RULES:
            raise ValueError(f"data.rule={rule!r} is not one of {RULES}")
        if n_seeds < 2:
            raise ValueError(f"data.n_seeds={n_seeds} must be >= 2")
        if continuation_length < 1:
            raise ValueError(f"data.continuation_length={continuation_length} must be >= 1")
        if rule == "last_seed_step" and not 0 <= seed_index < n_seeds:
            raise ValueError(f"data.seed_index={seed_index} must lie in [0, data.n_seeds={n_seeds})")
        self.n_seeds, self.continuation_length = int(n_seeds), int(continuation_length)
        self.rule, self.seed_index = rule, int(seed_index)
        self.step_factor, self.ar2_coef = float(step_factor), float(ar2_coef)
        self.tgt_offset = self.n_seeds
        self.n_features, self.target_length = 1, self.continuation_length
        self.check_declared("n_features", n_features, 1)
        self.check_declared("target_length", target_length, self.continuation_length)

    def generate(self, n: int, generator: torch.Generator) -> SeqBatch:
        seeds = torch.rand(n, self.n_seeds, generator=generator) * 2 - 1
        tgt = seeded_sequences(
            seeds, self.continuation_length, self.rule, self.seed_index, self.step_factor, self.ar2_coef
        )
        return SeqBatch(
            src=seeds.unsqueeze(-1),
            src_lengths=torch.full((n,), self.n_seeds, dtype=torch.long),
            tgt=tgt.unsqueeze(-1),
            tgt_lengths=torch.full((n,), self.continuation_length, dtype=torch.long),
        )
