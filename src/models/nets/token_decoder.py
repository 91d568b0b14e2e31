"""The token decoder of Luong et al. (2015): recurrent stack, optional attention, projection to the vocabulary.

``h_t = RNN(y_{t-1}, h_{t-1})``, context ``c_t = attend(h_t, encoder outputs)``,
``h~_t = tanh(W_c [c_t; h_t])``, logits ``= W_s h~_t``. Without input feeding, a teacher-forced
decoder runs over the whole target in one call.
"""

from __future__ import annotations

import torch
from torch import nn

from src.models.nets.attention import LuongAttention
from src.models.nets.recurrent import State, make_recurrent


class TokenDecoder(nn.Module):
    """Embedding + recurrent stack + (optional) Luong attention + projection to the vocabulary.

    With ``input_feeding`` (Luong's input-feeding approach, attention only), the attentional
    vector ``h~_{t-1}`` is concatenated to the next step's input embedding, so the decoder knows
    where it attended last: without it, a content-based attention loses its place on repeated
    tokens and at the end of the source. The decoder then runs step by step; its state is
    ``(recurrent state, h~ as (1, B, H))``.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        cell: str,
        dropout: float,
        attention: str,
        pad_id: int,
        input_feeding: bool = False,
    ) -> None:
        super().__init__()
        self.input_feeding = bool(input_feeding) and attention != "none"
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        rnn_input = embedding_dim + (hidden_size if self.input_feeding else 0)
        self.rnn = make_recurrent(cell, rnn_input, hidden_size, num_layers, dropout, "tanh")
        self.attention = None if attention == "none" else LuongAttention(attention, hidden_size)
        self.combine = None if attention == "none" else nn.Linear(2 * hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, vocab_size)

    def initial_state(self, encoder_state: State) -> State:
        """The decoder's state before its first step."""
        if not self.input_feeding:
            return encoder_state
        h = encoder_state[0] if isinstance(encoder_state, tuple) else encoder_state
        return (encoder_state, h.new_zeros(1, h.shape[1], self.hidden_size))

    def _attend(self, outputs: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor):
        context, weights = self.attention(outputs, memory, memory_mask)
        return torch.tanh(self.combine(torch.cat([context, outputs], dim=-1))), weights

    def forward(
        self, inputs: torch.Tensor, state: State, memory: torch.Tensor, memory_mask: torch.Tensor
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """Inputs (B, T) -> logits (B, T, V), new state, attention (B, T, S) or None."""
        embedded = self.dropout(self.embedding(inputs))
        if self.input_feeding:
            rnn_state, feed = state
            attentional, weights = [], []
            for t in range(inputs.shape[1]):
                step_input = torch.cat([embedded[:, t : t + 1], feed.transpose(0, 1)], dim=-1)
                output, rnn_state = self.rnn(step_input, rnn_state)
                vector, step_weights = self._attend(output, memory, memory_mask)
                feed = vector.transpose(0, 1)
                attentional.append(vector)
                weights.append(step_weights)
            outputs, state, all_weights = torch.cat(attentional, 1), (rnn_state, feed), torch.cat(weights, 1)
            return self.out(self.dropout(outputs)), state, all_weights
        outputs, state = self.rnn(embedded, state)
        weights = None
        if self.attention is not None:
            outputs, weights = self._attend(outputs, memory, memory_mask)
        return self.out(self.dropout(outputs)), state, weights
