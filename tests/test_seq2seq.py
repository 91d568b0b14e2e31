"""The token seq2seq family: loss normalisation, masking, decoding, bridging, metrics, and the task end to end."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import hydra
import pytest
import torch

from src.data.batch import SeqBatch
from src.data.tokens import make_token_batch
from src.metrics.tokens import ExactMatch, TokenAccuracy
from src.models.nets import decoding
from src.models.nets.attention import LuongAttention
from src.models.nets.decoding import SpecialTokens, step_log_probs
from src.models.nets.seq2seq import Seq2Seq
from src.models.tasks.token_seq2seq import TokenSeq2SeqTask, token_cross_entropy
from src.train import train

ATTENTIONS = ("none", "dot", "general", "concat")


def small_net(**kwargs) -> Seq2Seq:
    torch.manual_seed(0)
    defaults = dict(vocab_size=30, embedding_dim=8, hidden_size=12, cell="gru", attention="general")
    return Seq2Seq(**{**defaults, **kwargs}).eval()


def small_batch(n: int = 6, seed: int = 0) -> SeqBatch:
    return make_token_batch(n, "reverse", 2, 7, 3, 29, torch.Generator().manual_seed(seed))


# --- the post's bug: normalisation must run over the vocabulary and nothing else -----------------


def manual_nll(logits: torch.Tensor, target: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    log_probs = logits.log_softmax(dim=-1)  # (B, T, V): over the vocabulary
    picked = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    valid = target != pad_id
    return -(picked * valid).sum() / valid.sum()


def test_loss_normalises_over_the_vocabulary_only() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 7, 11)
    target = torch.randint(3, 11, (4, 7))
    target[0, 5:] = 0
    loss = token_cross_entropy(logits, target, pad_id=0)
    assert loss == pytest.approx(float(manual_nll(logits, target)), rel=1e-5)
    # A softmax over the vocabulary is blind to a constant added to every logit of one (b, t)
    # position; a softmax over time (the post's bug) or batch is not.
    shifted = logits + 10 * torch.randn(4, 7, 1)
    assert token_cross_entropy(shifted, target, 0) == pytest.approx(float(loss), rel=1e-5)
    # ...and a softmax over any other axis gives a different number, so this test would catch it.
    for wrong_dim in (0, 1):
        wrong = -(logits.log_softmax(wrong_dim).gather(-1, target.unsqueeze(-1)).squeeze(-1) * (target != 0)).sum()
        assert float(wrong / (target != 0).sum()) != pytest.approx(float(loss), rel=1e-3)


def test_task_loss_is_vocabulary_cross_entropy_of_the_nets_logits() -> None:
    """The task must neither re-normalise the logits over another axis nor count padding."""
    net = small_net()
    task = TokenSeq2SeqTask(net, optimizer=lambda params: torch.optim.Adam(params))
    batch = small_batch()
    logits = net(batch.src, batch.src_lengths, batch.tgt)
    task.log_loss = task.check_finite = lambda *a, **k: None  # no Trainer attached
    loss = task._shared_step(batch, "train")
    assert loss.item() == pytest.approx(manual_nll(logits, batch.tgt).item(), rel=1e-5)


def test_beam_step_log_probs_sum_to_one_over_the_vocabulary() -> None:
    logits = torch.randn(3, 5, 30)
    probs = step_log_probs(logits).exp()
    assert torch.allclose(probs.sum(-1), torch.ones(3, 5), atol=1e-5)
    assert not torch.allclose(probs.sum(1), torch.ones(3, 30), atol=1e-2)


def test_loss_rejects_a_time_major_layout() -> None:
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        token_cross_entropy(torch.randn(7, 4, 11), torch.zeros(4, 7, dtype=torch.long), 0)


# --- masking: padding changes nothing -------------------------------------------------------------


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize(
    "cell,bidirectional,input_feeding",
    [("gru", False, False), ("lstm", True, False), ("rnn", False, False), ("gru", True, True)],
)
@torch.no_grad()
def test_padding_changes_nothing_in_outputs_or_loss(
    attention: str, cell: str, bidirectional: bool, input_feeding: bool
) -> None:
    net = small_net(attention=attention, cell=cell, bidirectional=bidirectional, input_feeding=input_feeding)
    batch = small_batch(6)
    logits = net(batch.src, batch.src_lengths, batch.tgt)
    # extra padding columns, and garbage (not pad) tokens in the padded source positions
    extra = 4
    src = torch.cat([batch.src, torch.zeros(6, extra, dtype=torch.long)], 1)
    tgt = torch.cat([batch.tgt, torch.zeros(6, extra, dtype=torch.long)], 1)
    pad_positions = torch.arange(src.shape[1])[None, :] >= batch.src_lengths[:, None]
    src = src.masked_fill(pad_positions, 17)
    logits_padded = net(src, batch.src_lengths, tgt)
    valid = batch.tgt != 0
    assert torch.allclose(logits_padded[:, : batch.tgt.shape[1]][valid], logits[valid], atol=1e-5)
    assert float(token_cross_entropy(logits_padded, tgt, 0)) == pytest.approx(
        float(token_cross_entropy(logits, batch.tgt, 0)), rel=1e-5
    )
    # each example alone, without any padding, gives the same outputs as inside the padded batch
    for k in range(6):
        s, t = int(batch.src_lengths[k]), int(batch.tgt_lengths[k])
        alone = net(batch.src[k : k + 1, :s], batch.src_lengths[k : k + 1], batch.tgt[k : k + 1, :t])
        assert torch.allclose(alone[0], logits[k, :t], atol=1e-5)
    decoded = net.decode(batch.src, batch.src_lengths, batch.tgt.shape[1]).tokens
    assert torch.equal(net.decode(src, batch.src_lengths, batch.tgt.shape[1]).tokens, decoded)


@pytest.mark.parametrize("kind", ATTENTIONS[1:])
def test_attention_gives_padding_zero_weight(kind: str) -> None:
    torch.manual_seed(0)
    attention = LuongAttention(kind, 6)
    memory, query = torch.randn(3, 5, 6), torch.randn(3, 4, 6)
    mask = torch.arange(5)[None, :] < torch.tensor([5, 3, 1])[:, None]
    context, weights = attention(query, memory, mask)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 4))
    assert (weights[~mask[:, None, :].expand_as(weights)] == 0).all()
    assert context.shape == (3, 4, 6)


# --- decoding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell,input_feeding", [("gru", False), ("lstm", False), ("lstm", True)])
def test_beam_size_one_equals_greedy(attention: str, cell: str, input_feeding: bool) -> None:
    net = small_net(attention=attention, cell=cell, input_feeding=input_feeding)
    batch = small_batch(8, seed=3)
    memory, mask, state = net.encode(batch.src, batch.src_lengths)
    ids = SpecialTokens(net.pad_id, net.bos_id, net.eos_id)
    greedy = decoding.greedy(net.decoder, memory, mask, state, 9, ids)
    beam = decoding.beam(net.decoder, memory, mask, state, 9, 1, ids)
    assert torch.equal(beam.tokens, greedy.tokens)
    if attention != "none":
        assert torch.allclose(beam.attention, greedy.attention, atol=1e-6)


def sequence_log_prob(net: Seq2Seq, src: torch.Tensor, lengths: torch.Tensor, tokens: list[int]) -> float:
    tgt = torch.tensor([tokens])
    log_probs = net(src, lengths, tgt).log_softmax(-1)[0]
    return float(log_probs.gather(-1, tgt[0, :, None]).sum())


def test_wide_beam_finds_the_exact_best_sequence() -> None:
    """With a beam as wide as every hypothesis, beam search is exhaustive: compare with brute force."""
    net = small_net(vocab_size=5, attention="dot", input_feeding=True)
    src, lengths = torch.tensor([[3, 4, 3]]), torch.tensor([3])
    max_len, eos = 3, 2
    best = net.decode(src, lengths, max_len, beam_size=125).tokens[0].tolist()
    candidates = []
    for length in range(1, max_len + 1):
        for seq in itertools.product(range(5), repeat=length):
            if eos in seq[:-1] or (length < max_len and seq[-1] != eos):
                continue
            candidates.append((sequence_log_prob(net, src, lengths, list(seq)), list(seq)))
    expected = max(candidates)[1]
    assert best[: len(expected)] == expected and all(t == 0 for t in best[len(expected) :])


def test_decoding_stops_at_eos_and_pads_after_it() -> None:
    net = small_net()
    batch = small_batch(8)
    for beam in (1, 3):
        tokens = net.decode(batch.src, batch.src_lengths, 12, beam_size=beam).tokens
        for row in tokens.tolist():
            if 2 in row:
                assert all(t == 0 for t in row[row.index(2) + 1 :])


@pytest.mark.parametrize("input_feeding", [False, True])
def test_teacher_forcing_step_loop_matches_the_one_call_path(input_feeding: bool) -> None:
    net = small_net(cell="lstm", input_feeding=input_feeding)
    batch = small_batch()
    full = net(batch.src, batch.src_lengths, batch.tgt, teacher_forcing=1.0)
    stepped = net(batch.src, batch.src_lengths, batch.tgt, teacher_forcing=1.0 - 1e-12)
    assert torch.allclose(full, stepped, atol=1e-5)
    free = net(batch.src, batch.src_lengths, batch.tgt, teacher_forcing=0.0)
    greedy = net.decode(batch.src, batch.src_lengths, batch.tgt.shape[1]).tokens
    first = free.argmax(-1)[:, 0]
    assert torch.equal(first, greedy[:, 0])


# --- bidirectional bridging -------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bidirectional_state_is_bridged_layer_by_layer(cell: str) -> None:
    net = small_net(cell=cell, bidirectional=True, num_layers=2, hidden_size=12)
    batch = small_batch(5)
    memory, state = net.encoder(batch.src, batch.src_lengths)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (2, 5, 12)
    rnn = net.encoder.rnn
    # the forward half of the top layer's bridged state is the last valid forward output, the
    # backward half the backward output at step 0 (having read the whole sequence, padding skipped)
    last = batch.src_lengths - 1
    assert torch.allclose(h[1, :, :6], memory[torch.arange(5), last, :6], atol=1e-6)
    assert torch.allclose(h[1, :, 6:], memory[:, 0, 6:], atol=1e-6)
    # layer 0 is layer 0's own pair of directions, recomputed with a one-layer copy
    layer0 = type(rnn)(8, 6, num_layers=1, batch_first=True, bidirectional=True)
    layer0.load_state_dict({k.replace("_l0", "_l0"): v for k, v in rnn.state_dict().items() if "_l0" in k})
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        net.encoder.embedding(batch.src), batch.src_lengths, batch_first=True, enforce_sorted=False
    )
    _, reference = layer0(packed)
    reference_h = reference[0] if cell == "lstm" else reference
    assert torch.allclose(h[0], torch.cat([reference_h[0], reference_h[1]], dim=-1), atol=1e-6)


def test_bidirectional_needs_an_even_hidden_size() -> None:
    with pytest.raises(ValueError, match="model.net.hidden_size"):
        small_net(bidirectional=True, hidden_size=11)


def test_bad_attention_names_its_key() -> None:
    with pytest.raises(ValueError, match="model.net.attention"):
        small_net(attention="bahdanau")


# --- metrics on decoded sequences -------------------------------------------------------------------


def test_token_accuracy_and_exact_match_on_hand_made_sequences() -> None:
    target = torch.tensor([[5, 6, 2, 0], [7, 2, 0, 0], [4, 4, 4, 2]])
    preds = torch.tensor([[5, 6, 2, 0], [7, 9, 2, 0], [4, 4, 4, 4]])  # right, too long, no eos
    accuracy, exact = TokenAccuracy(0), ExactMatch(0)
    accuracy.update(preds, target), exact.update(preds, target)
    assert float(exact.compute()) == pytest.approx(1 / 3)
    assert float(accuracy.compute()) == pytest.approx((3 + 1 + 3) / 9)
    # a prediction that runs on past the target's width does not match
    exact.reset()
    exact.update(torch.tensor([[5, 6, 2, 0, 0], [7, 2, 0, 0, 8]]), target[:2])
    assert float(exact.compute()) == pytest.approx(1 / 2)


# --- the task end to end ----------------------------------------------------------------------------


def test_token_run_writes_metrics_figures_and_a_safe_checkpoint(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "model=seq2seq",
        "data=increment",
        "callbacks=seq2seq",
        "data.n_train=128",
        "data.n_val=16",
        "data.n_test=16",
        "callbacks.attention_figure.every_n_epochs=1",
        "callbacks.decoded_text.every_n_epochs=1",
        "callbacks.saturation.n_examples=8",
    )
    metrics = train(cfg)
    for name in ("val/loss", "val/token_accuracy", "val/exact_match", "test/loss", "test/exact_match"):
        assert name in metrics
    assert json.loads((tmp_path / "metrics.json").read_text()) == pytest.approx(metrics)
    torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "histograms": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert "val/attention" in tags["images"]
    assert {"saturation/net.encoder.rnn/h", "saturation/net.decoder.rnn/h"} <= set(tags["histograms"])
    assert "saturation/net.encoder.rnn" in tags["scalars"]
    assert any(t.startswith("val/decoded") for t in tags["tensors"])


def test_beam_search_runs_in_the_task(make_cfg, tmp_path: Path) -> None:
    """The task's test metrics are those of beam search with model.beam_size on the best checkpoint."""
    cfg = make_cfg("model=seq2seq_bilstm", "data=reverse", "model.beam_size=3", "data.n_val=8", "data.n_test=64")
    metrics = train(cfg)
    task = hydra.utils.instantiate(cfg.model).eval()
    task.load_state_dict(torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"])
    datamodule = hydra.utils.instantiate(cfg.data)
    accuracy, exact = TokenAccuracy(0), ExactMatch(0)
    for batch in itertools.islice(datamodule.test_dataloader(), cfg.trainer.limit_test_batches):
        tokens = task.net.decode(batch.src, batch.src_lengths, batch.tgt.shape[1], beam_size=3).tokens
        accuracy.update(tokens, batch.tgt)
        exact.update(tokens, batch.tgt)
    assert metrics["test/token_accuracy"] == pytest.approx(float(accuracy.compute()))
    assert metrics["test/exact_match"] == pytest.approx(float(exact.compute()))


def test_task_rejects_bad_settings_by_key() -> None:
    net = small_net()
    for kwargs, key in (
        ({"beam_size": 0}, "model.beam_size"),
        ({"teacher_forcing": 1.5}, "model.teacher_forcing"),
        ({"label_smoothing": 1.0}, "model.label_smoothing"),
    ):
        with pytest.raises(ValueError, match=key):
            TokenSeq2SeqTask(net, optimizer=lambda params: torch.optim.Adam(params), **kwargs)
