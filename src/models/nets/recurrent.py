"""Recurrent stacks chosen by config: cell ``lstm``/``gru``/``rnn`` and activation ``tanh``/``relu``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# A GRU/RNN's ``h``, an LSTM's ``(h, c)``, or a decoder's ``(recurrent state, fed-back vector)``.
State = torch.Tensor | tuple

CELLS = ("lstm", "gru", "rnn")
ACTIVATIONS = ("tanh", "relu")


class ActivatedLSTM(nn.Module):
    """A batch-first multi-layer LSTM whose cell and output activation is configurable.

    Keras' ``LSTM(activation='relu')`` replaces tanh in ``c~ = act(.)`` and ``h = o * act(c)``;
    ``nn.LSTM`` cannot, so this runs the recurrence itself. Weights are initialised as Keras
    does (Glorot input kernel, orthogonal recurrent kernel, forget-gate bias 1), which a relu
    recurrence needs to stay stable. The return value matches ``nn.LSTM``: ``(out, (h_n, c_n))``.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.act = torch.relu if activation == "relu" else torch.tanh
        self.input_maps = nn.ModuleList(
            nn.Linear(input_size if i == 0 else hidden_size, 4 * hidden_size) for i in range(num_layers)
        )
        self.recurrent_maps = nn.ModuleList(
            nn.Linear(hidden_size, 4 * hidden_size, bias=False) for _ in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        for input_map, recurrent_map in zip(self.input_maps, self.recurrent_maps):
            nn.init.xavier_uniform_(input_map.weight)
            nn.init.zeros_(input_map.bias)
            input_map.bias.data[hidden_size : 2 * hidden_size] = 1.0
            for block in recurrent_map.weight.data.chunk(4, dim=0):
                nn.init.orthogonal_(block)

    def forward(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``lengths`` (B,), optional: past its length a sequence's state is frozen and its output is 0,
        so that the final state is the one at the last valid step (what packing gives ``nn.LSTM``)."""
        batch, steps = x.shape[:2]
        if state is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden_size)
            state = (zeros, zeros)
        h_layers, c_layers = [], []
        for layer in range(self.num_layers):
            if layer > 0:
                x = self.dropout(x)
            projected = self.input_maps[layer](x)
            h, c = state[0][layer], state[1][layer]
            outputs = []
            for t in range(steps):
                gates = projected[:, t] + self.recurrent_maps[layer](h)
                i, f, g, o = gates.chunk(4, dim=-1)
                c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * self.act(g)
                h_new = torch.sigmoid(o) * self.act(c_new)
                if lengths is None:
                    h, c = h_new, c_new
                    outputs.append(h)
                else:
                    valid = (t < lengths).unsqueeze(-1)
                    h, c = torch.where(valid, h_new, h), torch.where(valid, c_new, c)
                    outputs.append(h_new * valid)
            x = torch.stack(outputs, dim=1)
            h_layers.append(h)
            c_layers.append(c)
        return x, (torch.stack(h_layers), torch.stack(c_layers))


def make_recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    dropout: float = 0.0,
    activation: str = "tanh",
    bidirectional: bool = False,
) -> nn.Module:
    """A batch-first recurrent stack; ``model.cell`` and ``model.activation`` pick its kind."""
    if cell not in CELLS:
        raise ValueError(f"model.net.cell={cell!r} is not one of {CELLS}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"model.net.activation={activation!r} is not one of {ACTIVATIONS}")
    if hidden_size < 1 or num_layers < 1:
        raise ValueError(f"model.net.hidden_size={hidden_size} and model.net.num_layers={num_layers} must be >= 1")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"model.net.dropout={dropout} must lie in [0, 1)")
    dropout = dropout if num_layers > 1 else 0.0
    if cell == "lstm" and activation == "relu":
        if bidirectional:
            raise ValueError("model.net.activation='relu' with model.net.cell='lstm' does not support bidirectional")
        return ActivatedLSTM(input_size, hidden_size, num_layers, dropout, activation)
    if cell == "gru" and activation == "relu":
        raise ValueError("model.net.activation='relu' is not available for model.net.cell='gru'; use 'lstm' or 'rnn'")
    kwargs = dict(num_layers=num_layers, dropout=dropout, batch_first=True, bidirectional=bidirectional)
    if cell == "rnn":
        return nn.RNN(input_size, hidden_size, nonlinearity=activation, **kwargs)
    return (nn.LSTM if cell == "lstm" else nn.GRU)(input_size, hidden_size, **kwargs)


def last_valid(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The output at each sequence's last valid step: (B, S, H) -> (B, H)."""
    index = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
    return outputs.gather(1, index).squeeze(1)


def run_recurrent(
    rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor, state: object | None = None
) -> tuple[torch.Tensor, object]:
    """Run ``rnn`` over the valid steps of each sequence only: (outputs (B, S, H), final state).

    Padded steps never touch the state, so the final state is the one at each sequence's last
    valid step and padding values cannot leak into what the encoder passes on. Outputs past a
    sequence's length are 0. Equal-length batches skip packing (it costs a sort and a copy).
    """
    steps = x.shape[1]
    if bool((lengths == steps).all()):
        return rnn(x, state)
    if isinstance(rnn, ActivatedLSTM):
        return rnn(x, state, lengths=lengths)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, final = rnn(packed, state)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=steps)
    return out, final


def top_hidden(state: object) -> torch.Tensor:
    """The last layer's hidden state (B, H) from an LSTM's ``(h, c)`` or a GRU/RNN's ``h``."""
    h = state[0] if isinstance(state, tuple) else state
    return h[-1]


def feedback(prediction: torch.Tensor, truth: torch.Tensor | None, teacher_forcing: float) -> torch.Tensor:
    """The next decoder input: the true previous value with probability ``teacher_forcing`` (drawn
    per example), else the model's own previous prediction. ``truth`` is not read when the ratio is 0."""
    if teacher_forcing <= 0.0 or truth is None:
        return prediction
    coin = torch.rand(prediction.shape[0], 1, device=prediction.device) < teacher_forcing
    return torch.where(coin, truth, prediction)


def map_state(state: State, fn: Callable[[torch.Tensor], torch.Tensor]) -> State:
    """Apply ``fn`` to every tensor of a (nested) recurrent state; batch is dim 1 in all of them."""
    return tuple(map_state(s, fn) for s in state) if isinstance(state, tuple) else fn(state)


def recurrent_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Every recurrent layer in ``module`` (``nn.RNN``/``GRU``/``LSTM``, ``ActivatedLSTM``) by qualified
    name, nested ones inside them excluded: what watches hidden states hooks these."""
    found: dict[str, nn.Module] = {}
    for name, child in module.named_modules():
        if isinstance(child, (nn.RNNBase, ActivatedLSTM)) and not any(name.startswith(f"{p}.") for p in found):
            found[name] = child
    return found
