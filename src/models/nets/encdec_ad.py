"""EncDec-AD (Malhotra et al. 2016, arXiv 1607.00148): the encoder's final state starts a decoder
that rebuilds the target in reverse order, teacher-forced in training, free-running at inference."""

from __future__ import annotations

import torch
from torch import nn

from src.models.nets.recurrent import feedback, make_recurrent, run_recurrent, top_hidden


def reverse_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps) indices reversing each sequence within its own length; padding stays in place.

    The map is its own inverse, so the same gather un-reverses the decoder's output.
    """
    t = torch.arange(steps, device=lengths.device).unsqueeze(0)
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


class EncDecAD(nn.Module):
    """Encoder RNN over ``src``; its final (full) state is the decoder's initial state. The decoder
    first predicts the target's last valid value from that state, then each earlier value from the
    one after it: the true one with probability ``teacher_forcing``, else its own prediction.

    For reconstruction (the paper) the target is the source window; for continuation it is what
    follows, decoded backwards from its end. Reads ``tgt`` values only when teacher forcing.
    """

    reconstructs = True  # rebuilds its input when tgt = src: the anomaly task can score it

    def __init__(
        self,
        n_features: int,
        target_length: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        cell: str = "lstm",
        activation: str = "tanh",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if target_length < 1 or n_features < 1:
            raise ValueError(
                f"model.net.target_length={target_length} and model.net.n_features={n_features} must be >= 1"
            )
        self.n_features, self.target_length = n_features, target_length
        self.encoder = make_recurrent(cell, n_features, hidden_size, num_layers, dropout, activation)
        self.decoder = make_recurrent(cell, n_features, hidden_size, num_layers, dropout, activation)
        self.readout = nn.Linear(hidden_size, n_features)

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
        tgt_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch = src.shape[0]
        steps = tgt.shape[1] if tgt is not None else self.target_length
        if tgt_lengths is None:
            tgt_lengths = torch.full((batch,), steps, dtype=torch.long, device=src.device)
        order = reverse_index(tgt_lengths, steps)
        reversed_tgt = None
        if tgt is not None and teacher_forcing > 0.0:
            reversed_tgt = tgt.gather(1, order.unsqueeze(-1).expand(-1, -1, tgt.shape[-1]))
        _, state = run_recurrent(self.encoder, src, src_lengths)
        prediction = self.readout(top_hidden(state))  # h_D(L) = h_E(L) -> x'(L)
        outputs = [prediction]
        for k in range(1, steps):
            truth = reversed_tgt[:, k - 1] if reversed_tgt is not None else None
            step_input = feedback(prediction, truth, teacher_forcing)
            out, state = self.decoder(step_input.unsqueeze(1), state)
            prediction = self.readout(out[:, 0])
            outputs.append(prediction)
        reversed_pred = torch.stack(outputs, dim=1)
        return reversed_pred.gather(1, order.unsqueeze(-1).expand(-1, -1, reversed_pred.shape[-1]))
