"""Decoding a token decoder on its own outputs: greedy and batched beam search, stopping at eos.

Both take what ``Seq2Seq.encode`` returns (encoder outputs, source mask, the decoder's initial
state) and return ``Decoded``: tokens (B, max_len) ending in eos then ``pad_id``, so that a
prediction compares to a padded target row.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from src.models.nets.recurrent import State, map_state
from src.models.nets.token_decoder import TokenDecoder


class SpecialTokens(NamedTuple):
    pad_id: int
    bos_id: int
    eos_id: int


class Decoded(NamedTuple):
    """Decoder output: ``tokens`` (B, L) ending in eos then padded; ``attention`` (B, L, S) or None."""

    tokens: torch.Tensor
    attention: torch.Tensor | None


def step_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the next token: normalised over the vocabulary (the last axis)."""
    return torch.log_softmax(logits.float(), dim=-1)


def greedy(
    decoder: TokenDecoder, memory: torch.Tensor, mask: torch.Tensor, state: State, max_len: int, ids: SpecialTokens
) -> Decoded:
    """Each step feeds back the most likely token; a finished sequence emits ``pad_id``."""
    batch = memory.shape[0]
    tokens = memory.new_full((batch, max_len), ids.pad_id, dtype=torch.long)
    attention = memory.new_zeros(batch, max_len, memory.shape[1]) if decoder.attention is not None else None
    step_input = tokens.new_full((batch, 1), ids.bos_id)
    finished = torch.zeros(batch, dtype=torch.bool, device=memory.device)
    for t in range(max_len):
        logits, state, weights = decoder(step_input, state, memory, mask)
        token = logits[:, -1].argmax(-1).masked_fill(finished, ids.pad_id)
        tokens[:, t] = token
        if attention is not None:
            attention[:, t] = weights[:, -1].masked_fill(finished[:, None], 0.0)
        finished |= token == ids.eos_id
        if finished.all():
            break
        step_input = token[:, None]
    return Decoded(tokens, attention)


def beam(
    decoder: TokenDecoder,
    memory: torch.Tensor,
    mask: torch.Tensor,
    state: State,
    max_len: int,
    k: int,
    ids: SpecialTokens,
) -> Decoded:
    """Batched beam search over B * k hypotheses; a finished hypothesis only extends with pad at log-prob 0."""
    batch, vocab, device = memory.shape[0], decoder.out.out_features, memory.device
    memory, mask = memory.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
    state = map_state(state, lambda s: s.repeat_interleave(k, 1))
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    history = torch.empty(batch * k, 0, dtype=torch.long, device=device)
    attention = memory.new_zeros(batch * k, 0, memory.shape[1]) if decoder.attention is not None else None
    pad_only = torch.full((vocab,), float("-inf"), device=device)
    pad_only[ids.pad_id] = 0.0
    step_input = torch.full((batch * k, 1), ids.bos_id, dtype=torch.long, device=device)
    offsets = torch.arange(batch, device=device)[:, None] * k
    for _ in range(max_len):
        logits, state, weights = decoder(step_input, state, memory, mask)
        log_probs = torch.where(finished[:, None], pad_only, step_log_probs(logits[:, -1]))
        total = (scores.reshape(-1, 1) + log_probs).view(batch, k * vocab)
        scores, index = total.topk(k, dim=-1)
        rows = (offsets + index // vocab).view(-1)
        token = (index % vocab).view(-1)
        state = map_state(state, lambda s: s.index_select(1, rows))
        history = torch.cat([history[rows], token[:, None]], dim=1)
        if attention is not None:
            step_weights = weights[:, -1].masked_fill(finished[:, None], 0.0)[rows]
            attention = torch.cat([attention[rows], step_weights[:, None]], dim=1)
        finished = finished[rows] | (token == ids.eos_id)
        if finished.all():
            break
        step_input = token[:, None]
    best = torch.arange(batch, device=device) * k + scores.argmax(-1)
    tokens = history.new_full((batch, max_len), ids.pad_id)
    tokens[:, : history.shape[1]] = history[best]
    if attention is not None:
        full = attention.new_zeros(batch, max_len, attention.shape[-1])
        full[:, : attention.shape[1]] = attention[best]
        attention = full
    return Decoded(tokens, attention)
