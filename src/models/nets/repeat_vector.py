"""The Keras tutorial's LSTM autoencoder: encode, repeat the code over time, decode step-wise."""

from __future__ import annotations

import torch
from torch import nn

from src.models.nets.recurrent import last_valid, make_recurrent


class RepeatVectorAutoencoder(nn.Module):
    """``LSTM -> RepeatVector(T) -> LSTM(return_sequences) -> TimeDistributed(Dense)``.

    The encoder's output at the last valid source step is the only thing passed to the decoder;
    it is fed as the decoder's input at every target step.
    """

    reconstructs = True  # rebuilds its input when tgt = src: the anomaly task can score it

    def __init__(
        self,
        n_features: int,
        target_length: int,
        hidden_size: int = 100,
        num_layers: int = 1,
        cell: str = "lstm",
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if target_length < 1:
            raise ValueError(f"model.net.target_length={target_length} must be >= 1")
        self.n_features, self.target_length = n_features, target_length
        self.encoder = make_recurrent(cell, n_features, hidden_size, num_layers, dropout, activation)
        self.decoder = make_recurrent(cell, hidden_size, hidden_size, num_layers, dropout, activation)
        self.readout = nn.Linear(hidden_size, n_features)

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
        tgt_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        encoded, _ = self.encoder(src)
        code = last_valid(encoded, src_lengths)
        steps = tgt.shape[1] if tgt is not None else self.target_length
        decoded, _ = self.decoder(code.unsqueeze(1).expand(-1, steps, -1))
        return self.readout(decoded)
