"""The token encoder: embedding + recurrent stack over packed sequences (the post's "PyTorch 1" encoder)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from src.models.nets.recurrent import State, make_recurrent, map_state


class TokenEncoder(nn.Module):
    """Embedding + recurrent stack over packed sequences: outputs (B, S, H) and the final state.

    Bidirectional stacks run ``hidden_size // 2`` units per direction; the bridge concatenates
    each layer's forward and backward final states into the decoder's (layers, B, hidden_size).
    Packing makes the backward direction start at each sequence's own last token, so padding
    changes neither outputs nor state.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        cell: str,
        dropout: float,
        bidirectional: bool,
        pad_id: int,
    ) -> None:
        super().__init__()
        if bidirectional and hidden_size % 2:
            raise ValueError(f"model.net.hidden_size={hidden_size} must be even with model.net.bidirectional=true")
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        per_direction = hidden_size // 2 if bidirectional else hidden_size
        self.rnn = make_recurrent(cell, embedding_dim, per_direction, num_layers, dropout, "tanh", bidirectional)

    def bridge(self, state: State) -> State:
        """(layers * 2, B, H/2) with index ``2 * layer + direction`` -> (layers, B, H) as [forward; backward]."""
        if not self.bidirectional:
            return state

        def merge(h: torch.Tensor) -> torch.Tensor:
            layers2, batch, half = h.shape
            return h.view(layers2 // 2, 2, batch, half).permute(0, 2, 1, 3).reshape(layers2 // 2, batch, 2 * half)

        return map_state(state, merge)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        embedded = self.dropout(self.embedding(src))
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])
        return outputs, self.bridge(state)
