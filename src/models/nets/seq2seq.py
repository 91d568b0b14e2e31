"""Token encoder-decoder: ``TokenEncoder`` (embedding + recurrent stack) and ``TokenDecoder`` (Luong
attention), trained teacher-forced, decoded greedily or by beam search (``decoding.py``).

``forward`` returns *logits*; normalisation (over the vocabulary, ``dim=-1``) is the loss's job.
"""

from __future__ import annotations

import torch
from torch import nn

from src.masks import length_mask
from src.models.nets import decoding
from src.models.nets.attention import ATTENTIONS
from src.models.nets.decoding import Decoded, SpecialTokens
from src.models.nets.recurrent import State
from src.models.nets.token_decoder import TokenDecoder
from src.models.nets.token_encoder import TokenEncoder


class Seq2Seq(nn.Module):
    """Encoder-decoder over tokens; ``model.net.attention`` is ``none``, ``dot``, ``general`` or ``concat``.

    The token task's contract: ``vocab_size``, ``pad_id``, ``bos_id``, ``eos_id`` (checked against the
    data's), ``has_attention``, ``forward`` -> logits and ``decode`` -> ``Decoded``.
    """

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
        self.encoder = TokenEncoder(
            vocab_size, embedding_dim, hidden_size, num_layers, cell, dropout, bidirectional, pad_id
        )
        self.decoder = TokenDecoder(
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
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt: torch.Tensor, teacher_forcing: float = 1.0
    ) -> torch.Tensor:
        """Logits (B, T, V) for ``tgt`` (B, T).

        Each step's input is the previous gold token with probability ``teacher_forcing`` (drawn
        per example and step), else the model's own previous argmax.
        """
        memory, mask, state = self.encode(src, src_lengths)
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

    @torch.no_grad()
    def decode(self, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int, beam_size: int = 1) -> Decoded:
        """Greedy (``beam_size=1``) or beam-search decoding of at most ``max_len`` tokens, stopping at eos.

        Tokens after a sequence's eos are ``pad_id``, so a prediction compares to a padded target row.
        """
        if beam_size < 1:
            raise ValueError(f"model.beam_size={beam_size} must be >= 1")
        memory, mask, state = self.encode(src, src_lengths)
        ids = SpecialTokens(self.pad_id, self.bos_id, self.eos_id)
        if beam_size == 1:
            return decoding.greedy(self.decoder, memory, mask, state, max_len, ids)
        return decoding.beam(self.decoder, memory, mask, state, max_len, beam_size, ids)
