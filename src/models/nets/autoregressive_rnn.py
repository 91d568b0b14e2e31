"""One recurrent stack that reads the prefix, then continues it one step at a time (the Flux post)."""

from __future__ import annotations

import torch
from torch import nn

from src.models.nets.recurrent import feedback, last_valid, make_recurrent, run_recurrent


class AutoregressiveRNN(nn.Module):
    """``Linear(F, input_size) -> RNN(input_size, hidden_size) -> Linear(hidden, head_size) + relu
    -> Linear(head_size, F)``, one network for reading and for generating.

    The output after the last valid source step predicts the first target value; every later target
    value is predicted from the previous one, fed back in (the true one with probability
    ``teacher_forcing``). Outputs cover the target positions only, so the loss is on the
    continuation only. With ``input_size=3, hidden_size=3, head_size=5`` it is the Flux post's
    ``Dense(1,3) -> LSTM(3,3) -> Dense(3,5,relu) -> Dense(5,1)``.
    """

    reconstructs = False  # continues its input; it cannot rebuild it for the anomaly task

    def __init__(
        self,
        n_features: int,
        target_length: int,
        input_size: int = 32,
        hidden_size: int = 64,
        head_size: int = 32,
        num_layers: int = 1,
        cell: str = "lstm",
        activation: str = "tanh",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for key, value in (("input_size", input_size), ("head_size", head_size), ("target_length", target_length)):
            if value < 1:
                raise ValueError(f"model.net.{key}={value} must be >= 1")
        self.n_features, self.target_length = n_features, target_length
        self.embed = nn.Linear(n_features, input_size)
        self.rnn = make_recurrent(cell, input_size, hidden_size, num_layers, dropout, activation)
        self.head = nn.Sequential(nn.Linear(hidden_size, head_size), nn.ReLU(), nn.Linear(head_size, n_features))

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
        tgt_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out, state = run_recurrent(self.rnn, self.embed(src), src_lengths)
        prediction = self.head(last_valid(out, src_lengths))
        outputs = [prediction]
        steps = tgt.shape[1] if tgt is not None else self.target_length
        for t in range(1, steps):
            step_input = feedback(prediction, tgt[:, t - 1] if tgt is not None else None, teacher_forcing)
            out, state = self.rnn(self.embed(step_input).unsqueeze(1), state)
            prediction = self.head(out[:, 0])
            outputs.append(prediction)
        return torch.stack(outputs, dim=1)
