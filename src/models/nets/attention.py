"""Luong et al. (2015) attention: scores ``dot``, ``general`` and ``concat``, padding masked out."""

from __future__ import annotations

import torch
from torch import nn

ATTENTIONS = ("none", "dot", "general", "concat")


class LuongAttention(nn.Module):
    """Attends from decoder states (B, T, H) over encoder outputs (B, S, H).

    ``dot``: q . k;  ``general``: q . W k;  ``concat``: v . tanh(W [q; k]) (W split into its
    query and key halves, so no (B, T, S, 2H) tensor is built). Source positions outside
    ``memory_mask`` get weight exactly 0.
    """

    def __init__(self, kind: str, hidden_size: int) -> None:
        super().__init__()
        if kind not in ATTENTIONS or kind == "none":
            raise ValueError(
                f"model.net.attention={kind!r} is not one of {ATTENTIONS[1:]} (or 'none' for no attention)"
            )
        self.kind = kind
        if kind == "general":
            self.key_map = nn.Linear(hidden_size, hidden_size, bias=False)
        elif kind == "concat":
            self.query_map = nn.Linear(hidden_size, hidden_size, bias=False)
            self.key_map = nn.Linear(hidden_size, hidden_size)
            self.v = nn.Linear(hidden_size, 1, bias=False)

    def scores(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Unnormalised scores (B, T, S)."""
        if self.kind == "dot":
            return query @ memory.transpose(1, 2)
        if self.kind == "general":
            return query @ self.key_map(memory).transpose(1, 2)
        hidden = torch.tanh(self.query_map(query).unsqueeze(2) + self.key_map(memory).unsqueeze(1))
        return self.v(hidden).squeeze(-1)

    def forward(
        self, query: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context vectors (B, T, H) and attention weights (B, T, S), normalised over the source."""
        scores = self.scores(query, memory).masked_fill(~memory_mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return weights @ memory, weights
