"""Masks over padded sequences, shared by the datasets and the nets (neither imports the other)."""

from __future__ import annotations

import torch


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, max_len) bool mask, True where a position lies inside its sequence."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
