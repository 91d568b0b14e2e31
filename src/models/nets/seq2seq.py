"""Token encoder-decoder: embedding + recurrent encoder, attentive recurrent decoder, greedy and beam decoding.

The encoder is the post's "PyTorch 1" encoder (reference 000: ``nn.Embedding`` then a recurrent
stack). The decoder follows Luong et al. (2015): ``h_t = RNN(y_{t-1}, h_{t-1})``, context
``c_t = attend(h_t, encoder outputs)``, ``h~_t = tanh(W_c [c_t; h_t])``, logits ``= W_s h~_t``.
Without input feeding, a teacher-forced decoder runs over the whole target in one call.

``forward`` returns *logits*; normalisation (over the vocabulary, ``dim=-1``) is the loss's job.
"""
from __future__ import annotations

from typing import NamedTuple, Union

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from src.data.batch import length_mask
from src.models.nets.attention import ATTENTIONS, LuongAttention
from src.models.nets.recurrent import make_recurrent

State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


def map_state(state: State, fn) -> State:
    """Apply ``fn`` to every tensor of a (nested) state: a GRU/RNN ``h``, an LSTM ``(h, c)``, or the
    decoder's ``(recurrent state, fed-back attentional vector)``; batch is dim 1 in all of them."""
    return tuple(map_state(s, fn) for s in state) if isinstance(state, tuple) else fn(state)


class Decoded(NamedTuple):
    """Decoder output: ``tokens`` (B, L) ending in eos then padded; ``attention`` (B, L, S) or None."""

    tokens: torch.Tensor
    attention: torch.Tensor | None


class Encoder(nn.Module):
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


class Decoder(nn.Module):
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


class Seq2Seq(nn.Module):
    """Encoder-decoder over tokens; ``model.net.attention`` is ``none``, ``dot``, ``general`` or ``concat``."""

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        cell: str = "gru",
        dropout: float = 0.0,
        bidirectional: bool = False,
        attention: str = "general",
        input_feeding: bool = False,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"model.net.attention={attention!r} is not one of {ATTENTIONS}")
        if vocab_size <= max(pad_id, bos_id, eos_id):
            raise ValueError(f"model.net.vocab_size={vocab_size} must exceed the special ids pad/bos/eos")
        if embedding_dim < 1:
            raise ValueError(f"model.net.embedding_dim={embedding_dim} must be >= 1")
        self.vocab_size, self.pad_id, self.bos_id, self.eos_id = vocab_size, pad_id, bos_id, eos_id
        self.encoder = Encoder(vocab_size, embedding_dim, hidden_size, num_layers, cell, dropout, bidirectional, pad_id)
        self.decoder = Decoder(
            vocab_size, embedding_dim, hidden_size, num_layers, cell, dropout, attention, pad_id, input_feeding
        )

    @property
    def has_attention(self) -> bool:
        return self.decoder.attention is not None

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Encoder outputs (B, S, H), source mask (B, S), and the decoder's initial state."""
        memory, state = self.encoder(src, src_lengths)
        return memory, length_mask(src_lengths, src.shape[1]), self.decoder.initial_state(state)

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor | None = None,
        teacher_forcing: float = 1.0,
    ) -> torch.Tensor:
        """Logits (B, T, V) for ``tgt`` (B, T).

        Each step's input is the previous gold token with probability ``teacher_forcing`` (drawn
        per example and step), else the model's own previous argmax. With ``tgt=None`` the net
        decodes greedily for ``S + 1`` steps.
        """
        memory, mask, state = self.encode(src, src_lengths)
        if tgt is None:
            return self._free_run(memory, mask, state, src.shape[1] + 1)
        bos = tgt.new_full((tgt.shape[0], 1), self.bos_id)
        inputs = torch.cat([bos, tgt[:, :-1]], dim=1)
        if teacher_forcing >= 1.0:
            # every input is known: one decoder call (one recurrent call without input feeding)
            return self.decoder(inputs, state, memory, mask)[0]
        step_input, logits = inputs[:, :1], []
        for t in range(tgt.shape[1]):
            step_logits, state, _ = self.decoder(step_input, state, memory, mask)
            logits.append(step_logits)
            if t + 1 < tgt.shape[1]:
                own = step_logits.argmax(-1)
                gold = inputs[:, t + 1 : t + 2]
                use_gold = torch.rand(gold.shape, device=gold.device) < teacher_forcing
                step_input = torch.where(use_gold, gold, own)
        return torch.cat(logits, dim=1)

    def _free_run(self, memory: torch.Tensor, mask: torch.Tensor, state: State, steps: int) -> torch.Tensor:
        step_input = memory.new_full((memory.shape[0], 1), self.bos_id, dtype=torch.long)
        logits = []
        for _ in range(steps):
            step_logits, state, _ = self.decoder(step_input, state, memory, mask)
            logits.append(step_logits)
            step_input = step_logits.argmax(-1)
        return torch.cat(logits, dim=1)

    @torch.no_grad()
    def decode(self, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int, beam_size: int = 1) -> Decoded:
        """Greedy (``beam_size=1``) or beam-search decoding of at most ``max_len`` tokens, stopping at eos.

        Tokens after a sequence's eos are ``pad_id``, so a prediction compares to a padded target row.
        """
        if beam_size < 1:
            raise ValueError(f"model.beam_size={beam_size} must be >= 1")
        memory, mask, state = self.encode(src, src_lengths)
        if beam_size == 1:
            return self._greedy(memory, mask, state, max_len)
        return self._beam(memory, mask, state, max_len, beam_size)

    def generate(self, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int) -> torch.Tensor:
        """Greedy decoding: tokens (B, max_len)."""
        return self.decode(src, src_lengths, max_len).tokens

    def step_log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the next token: normalised over the vocabulary (the last axis)."""
        return torch.log_softmax(logits.float(), dim=-1)

    def _greedy(self, memory: torch.Tensor, mask: torch.Tensor, state: State, max_len: int) -> Decoded:
        batch = memory.shape[0]
        tokens = memory.new_full((batch, max_len), self.pad_id, dtype=torch.long)
        attention = memory.new_zeros(batch, max_len, memory.shape[1]) if self.has_attention else None
        step_input = tokens.new_full((batch, 1), self.bos_id)
        finished = torch.zeros(batch, dtype=torch.bool, device=memory.device)
        for t in range(max_len):
            logits, state, weights = self.decoder(step_input, state, memory, mask)
            token = logits[:, -1].argmax(-1).masked_fill(finished, self.pad_id)
            tokens[:, t] = token
            if attention is not None:
                attention[:, t] = weights[:, -1].masked_fill(finished[:, None], 0.0)
            finished |= token == self.eos_id
            if finished.all():
                break
            step_input = token[:, None]
        return Decoded(tokens, attention)

    def _beam(self, memory: torch.Tensor, mask: torch.Tensor, state: State, max_len: int, k: int) -> Decoded:
        """Batched beam search: B * k hypotheses; a finished hypothesis only extends with pad at log-prob 0."""
        batch, vocab, device = memory.shape[0], self.vocab_size, memory.device
        memory, mask = memory.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
        state = map_state(state, lambda s: s.repeat_interleave(k, 1))
        scores = torch.full((batch, k), float("-inf"), device=device)
        scores[:, 0] = 0.0  # all beams start identical: expand only the first
        finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
        history = torch.empty(batch * k, 0, dtype=torch.long, device=device)
        attention = memory.new_zeros(batch * k, 0, memory.shape[1]) if self.has_attention else None
        pad_only = torch.full((vocab,), float("-inf"), device=device)
        pad_only[self.pad_id] = 0.0
        step_input = torch.full((batch * k, 1), self.bos_id, dtype=torch.long, device=device)
        offsets = torch.arange(batch, device=device)[:, None] * k
        for _ in range(max_len):
            logits, state, weights = self.decoder(step_input, state, memory, mask)
            log_probs = self.step_log_probs(logits[:, -1])
            log_probs = torch.where(finished[:, None], pad_only, log_probs)
            total = (scores.reshape(-1, 1) + log_probs).view(batch, k * vocab)
            scores, index = total.topk(k, dim=-1)
            rows = (offsets + index // vocab).view(-1)
            token = (index % vocab).view(-1)
            state = map_state(state, lambda s: s.index_select(1, rows))
            history = torch.cat([history[rows], token[:, None]], dim=1)
            if attention is not None:
                step_weights = weights[:, -1].masked_fill(finished[:, None], 0.0)[rows]
                attention = torch.cat([attention[rows], step_weights[:, None]], dim=1)
            finished = finished[rows] | (token == self.eos_id)
            if finished.all():
                break
            step_input = token[:, None]
        best = (torch.arange(batch, device=device) * k + scores.argmax(-1))
        tokens = history.new_full((batch, max_len), self.pad_id)
        tokens[:, : history.shape[1]] = history[best]
        if attention is not None:
            full = attention.new_zeros(batch, max_len, attention.shape[-1])
            full[:, : attention.shape[1]] = attention[best]
            attention = full
        return Decoded(tokens, attention)
