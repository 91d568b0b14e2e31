"""The post's "PyTorch 2" autoencoder: a two-layer compressing encoder and its mirrored decoder."""

from __future__ import annotations

import torch
from torch import nn

from src.models.nets.recurrent import last_valid, make_recurrent, run_recurrent


class StackedLSTMAutoencoder(nn.Module):
    """Encoder ``n_features -> 2*emb -> emb``; the last valid hidden state of the second stack is the
    code. Decoder: the code repeated over time ``-> emb -> 2*emb -> Linear(n_features)``.

    Unlike the widely copied original (``x.reshape((1, seq_len, n_features))``), any batch size,
    any number of features and per-sequence ``src_lengths`` work.
    """

    reconstructs = True  # rebuilds its input when tgt = src: the anomaly task can score it

    def __init__(
        self,
        n_features: int,
        target_length: int,
        embedding_dim: int = 64,
        num_layers: int = 1,
        cell: str = "lstm",
        activation: str = "tanh",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if embedding_dim < 1 or target_length < 1 or n_features < 1:
            raise ValueError(
                f"model.net.embedding_dim={embedding_dim}, model.net.target_length={target_length} and "
                f"model.net.n_features={n_features} must be >= 1"
            )
        self.n_features, self.target_length = n_features, target_length
        wide = 2 * embedding_dim
        stack = lambda i, h: make_recurrent(cell, i, h, num_layers, dropout, activation)  # noqa: E731
        self.encoder = nn.ModuleList([stack(n_features, wide), stack(wide, embedding_dim)])
        self.decoder = nn.ModuleList([stack(embedding_dim, embedding_dim), stack(embedding_dim, wide)])
        self.readout = nn.Linear(wide, n_features)

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
        tgt_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = src
        for rnn in self.encoder:
            x, _ = run_recurrent(rnn, x, src_lengths)
        code = last_valid(x, src_lengths)  # = the second stack's final hidden state (top layer)
        steps = tgt.shape[1] if tgt is not None else self.target_length
        y = code.unsqueeze(1).expand(-1, steps, -1)
        for rnn in self.decoder:
            y, _ = rnn(y)
        return self.readout(y)
