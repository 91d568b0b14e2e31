"""Reproduce the PyTorch post "my seq2seq cannot overfit 50 examples of +1", then fix it one defect at a time.

The post trains a GRU encoder-decoder (embeddings 50, 50 units, no attention, Adam lr 1e-2, gradient
norm clipped at 3) on 50 random token sequences (tokens 3..99, lengths 5..9) whose target is every
token + 1 then eos. Its loss stops near 0.23, the 50 examples are never memorised, and the hidden
units sit near +-1. This script is a line-by-line port of its code (``np.random.seed(0)``,
``torch.manual_seed(0)``, ``load_data`` with its fixed batch order, the sorted and packed
``Recurrent`` encoder and decoder, ``NLLLoss`` on ``F.log_softmax(o)``), with a switch per defect:

- ``dim``: ``F.log_softmax(o)`` on the (T, B, V) tensor without ``dim``: PyTorch picks dim 0 for a
  3-d input, so the "probabilities" are normalised over **time**, not over the vocabulary;
- ``pad``: ``NLLLoss()`` without ``ignore_index``: padded positions are targets too (the post says
  it tried ``ignore_index``; the posted code does not have it);
- ``embed_init``: the embeddings initialised uniform in +-1e-3 (one of the post's attempted fixes).

Scores on the 50 training examples, for each variant: the loss floor (the last tenth of the losses
on the first batch of 32, the one the post's every-10th-step print shows), the floor that
normalisation over time forces on that batch whatever the weights (a token that is the target at n
positions of a sequence can get at most 1/n of its mass at each: padding, repeated tokens), exact match
of greedy decoding (from bos, argmax over the vocabulary, with the
lab's ``ExactMatch``), exact match of the post's own check (teacher-forced ``torch.max(outputs, 2)``),
and the saturation of encoder and decoder states (fraction with |h| > 0.99, the lab's measure). The
last rows train the lab's ``seq2seq`` presets on 50 examples with ``src.train``.

    python scripts/reproduce_seq2seq_post.py                           # a few minutes on one core
    python scripts/reproduce_seq2seq_post.py --steps 40 --seeds 0 --lab-epochs 1   # seconds

Prints a markdown table and writes ``seq2seq_post.md``, ``seq2seq_post.json`` and the figure
``seq2seq_post.png`` (loss curves; hidden-state histograms) into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: this worktree's src, not an installed copy
    sys.path.insert(0, str(ROOT))

from src.callbacks.saturation import measure_saturation, saturation_fraction  # noqa: E402
from src.metrics.tokens import ExactMatch  # noqa: E402
from src.reporting import compose_train_config, markdown_table, mean_and_range  # noqa: E402

PAD, BOS, EOS = 0, 1, 2
N_DATA, MIN_LEN, MAX_LEN, VOCAB = 50, 5, 10, 101
BATCH, LR, CLIP, EMB, HIDDEN = 32, 1e-2, 3.0, 50, 50
POSTED_FLOOR = 0.231410  # the post's "step: 490, loss: 0.231410"


@dataclass(frozen=True)
class Variant:
    """Which of the post's defects are fixed."""

    name: str
    dim: bool = False
    pad: bool = False
    embed_init: bool = False


VARIANTS = (
    Variant("as posted"),
    Variant("fix dim (log_softmax over the vocabulary)", dim=True),
    Variant("fix pad (ignore_index=pad)", pad=True),
    Variant("fix embed init (default N(0, 1))", embed_init=True),
    Variant("dim + pad fixed", dim=True, pad=True),
    Variant("all fixed", dim=True, pad=True, embed_init=True),
)


def load_data(size: int, min_len: int, max_len: int, max_word: int, min_word: int = 3) -> list[tuple]:
    """The post's ``load_data`` for one epoch: its fixed batches of (src, tgt_in, tgt_out) as (T, B)
    int64 tensors padded with 0, and the lengths of src and tgt_in. Draws from numpy's global RNG."""
    src = [np.random.randint(min_word, max_word - 1, np.random.randint(min_len, max_len)).tolist() for _ in range(size)]
    tgt_in = [[BOS] + [xi + 1 for xi in x] for x in src]
    tgt_out = [[xi + 1 for xi in x] + [EOS] for x in src]

    def pad(batch: list[list[int]]) -> torch.Tensor:
        width = max(len(x) for x in batch)
        return torch.tensor([x + [PAD] * (width - len(x)) for x in batch], dtype=torch.long).T.contiguous()

    batches = []
    for start in range(0, size, BATCH):
        s, ti, to = src[start : start + BATCH], tgt_in[start : start + BATCH], tgt_out[start : start + BATCH]
        batches.append((pad(s), pad(ti), pad(to), np.array([len(x) for x in s]), np.array([len(x) for x in ti])))
    return batches


class Recurrent(nn.Module):
    """The post's ``Recurrent``: sort the batch by length, pack, run the GRU, unsort."""

    def __init__(self, embedding: nn.Embedding, num_units: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.rnn = nn.GRU(embedding.weight.size(1), num_units, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor, len_x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        sorted_indices = np.argsort(-len_x).tolist()
        unsorted_indices = np.argsort(sorted_indices).tolist()
        x, h = x[:, sorted_indices], h[:, sorted_indices, :]
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(x), len_x[sorted_indices].tolist())
        o, hh = self.rnn(packed, h)
        o, _ = nn.utils.rnn.pad_packed_sequence(o)
        return o[:, unsorted_indices, :], hh[:, unsorted_indices, :]


class PostSeq2Seq(nn.Module):
    """``Seq2Seq(Encoder, Decoder, num_outputs)``: the encoder's final state starts the decoder; a
    Linear projects each decoder output to the vocabulary; ``log_softmax`` over ``dim`` (the post:
    none given, which for a (T, B, V) tensor is 0, time)."""

    def __init__(self, embed_init: bool, vocab_dim: bool) -> None:
        super().__init__()
        src_embed, tgt_embed = nn.Embedding(VOCAB, EMB), nn.Embedding(VOCAB, EMB)
        if not embed_init:
            src_embed.weight.data.uniform_(-1e-3, 1e-3)
            tgt_embed.weight.data.uniform_(-1e-3, 1e-3)
        self.encoder, self.decoder = Recurrent(src_embed, HIDDEN), Recurrent(tgt_embed, HIDDEN)
        self.out = nn.Linear(HIDDEN, VOCAB)
        self.vocab_dim = vocab_dim

    def forward(self, x, y, len_x, len_y) -> torch.Tensor:
        h = torch.zeros(1, x.shape[1], HIDDEN)
        _, h = self.encoder(x, h, len_x)
        o, _ = self.decoder(y, h, len_y)
        logits = self.out(o)
        if self.vocab_dim:
            return F.log_softmax(logits, dim=-1)
        with warnings.catch_warnings():  # "Implicit dimension choice ... deprecated": the post's bug itself
            warnings.simplefilter("ignore", UserWarning)
            return F.log_softmax(logits)

    @torch.no_grad()
    def greedy(self, x: torch.Tensor, len_x: np.ndarray, max_len: int) -> torch.Tensor:
        """Decode from bos, each step fed the previous argmax over the vocabulary of the projected
        output (the argmax any normalisation over the vocabulary gives); (B, max_len), pad after eos."""
        _, h = self.encoder(x, torch.zeros(1, x.shape[1], HIDDEN), len_x)
        token = torch.full((x.shape[1],), BOS, dtype=torch.long)
        done = torch.zeros(x.shape[1], dtype=torch.bool)
        tokens = []
        for _ in range(max_len):
            o, h = self.decoder.rnn(self.decoder.embedding(token).unsqueeze(0), h)
            token = self.out(o[0]).argmax(dim=-1).masked_fill(done, PAD)
            tokens.append(token)
            done |= token == EOS
        return torch.stack(tokens, dim=1)


def time_floor(batches: list[tuple], pad_counts: bool) -> float:
    """The lowest mean NLL normalisation over time allows on ``batches``: in each sequence a token that
    is the target at n counted positions gets at best 1/n at each, so the floor is sum n log n / N."""
    total, count = 0.0, 0
    for _, _, yout, _, _ in batches:
        for column in yout.T.tolist():
            counted = [t for t in column if pad_counts or t != PAD]
            _, n = np.unique(counted, return_counts=True)
            total += float((n * np.log(n)).sum())
            count += len(counted)
    return total / count


@dataclass
class Result:
    variant: str
    loss_floor: list[float] = field(default_factory=list)
    time_floor: float = math.nan
    exact_match: list[float] = field(default_factory=list)
    posted_check: list[float] = field(default_factory=list)
    enc_saturation: list[float] = field(default_factory=list)
    dec_saturation: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: list[float] = field(default_factory=list)
    curve: list[float] = field(default_factory=list)
    hidden: list[float] = field(default_factory=list)


def exact_match(preds: torch.Tensor, target: torch.Tensor) -> float:
    metric = ExactMatch(PAD)
    metric.update(preds, target)
    return float(metric.compute())


def run_variant(variant: Variant, batches: list[tuple], steps: int, seed: int, result: Result) -> None:
    """The post's training loop for ``steps`` steps over its fixed batch order, then its checks."""
    torch.manual_seed(seed)
    net = PostSeq2Seq(variant.embed_init, variant.dim)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    criterion = nn.NLLLoss(ignore_index=PAD) if variant.pad else nn.NLLLoss()
    losses, start = [], time.perf_counter()
    for i in range(steps):
        x, yin, yout, lenx, leny = batches[i % len(batches)]
        net.train()
        optimizer.zero_grad()
        logits = net(x, yin, lenx, leny)
        loss = criterion(logits.view(-1, VOCAB), yout.contiguous().view(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), CLIP)
        optimizer.step()
        losses.append(loss.item())
    result.seconds.append(time.perf_counter() - start)
    result.steps = steps
    # The post printed every 10th step: always its first batch (32 examples), the loss this column shows.
    first_batch = losses[:: len(batches)]
    result.loss_floor.append(float(np.mean(first_batch[-max(1, len(first_batch) // 10) :])))
    result.time_floor = 0.0 if variant.dim else time_floor(batches[:1], pad_counts=not variant.pad)
    if not result.curve:
        result.curve = losses

    net.eval()
    matches = posted = 0.0
    hidden: dict[str, list[torch.Tensor]] = {"encoder.rnn": [], "decoder.rnn": []}
    for x, yin, yout, lenx, leny in batches:
        target = yout.T
        matches += exact_match(net.greedy(x, lenx, target.shape[1]), target) * target.shape[0]
        # The post's check: teacher-forced, torch.max over dim 2 of what the net returns, all positions.
        with torch.no_grad():
            preds = net(x, yin, lenx, leny).argmax(dim=2).T
        posted += float((preds == target).all(dim=1).sum())
        with torch.no_grad():
            measured = measure_saturation(net, lambda: net(x, yin, lenx, leny))
        for name, (_, values) in measured.items():
            hidden[name].append(values)
    result.exact_match.append(matches / N_DATA)
    result.posted_check.append(posted / N_DATA)
    encoder, decoder = torch.cat(hidden["encoder.rnn"]), torch.cat(hidden["decoder.rnn"])
    result.enc_saturation.append(saturation_fraction(encoder))
    result.dec_saturation.append(saturation_fraction(decoder))
    if not result.hidden:
        result.hidden = torch.cat([encoder, decoder]).tolist()


def run_lab(model: str, epochs: int | None, out: Path) -> Result:
    """The lab's ``model=<model> data=increment`` on 50 examples of the post's lengths, val = test = them."""
    from hydra.utils import instantiate

    from src.train import train

    overrides = [
        f"model={model}",
        "data=increment",
        f"data.n_train={N_DATA}",
        "data.eval_on=train",
        "data.batch_size=10",
        "data.max_len=9",
        "trainer.max_epochs=150",
        "callbacks=[model_checkpoint,timer,early_stopping]",
        "logger=[]",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]
    if epochs is not None:
        overrides.append(f"trainer.max_epochs={epochs}")
    run_dir = Path(tempfile.mkdtemp(prefix=f"lab_{model}_", dir=out))
    cfg = compose_train_config(overrides, run_dir)
    with open(run_dir / "train.log", "w") as log, contextlib.redirect_stdout(log):  # its config tree and tables
        metrics = train(cfg)
    task = instantiate(cfg.model)
    task.load_state_dict(torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"])
    data = instantiate(cfg.data)
    data.setup()
    batch = data.splits["train"]
    task.eval()
    with torch.no_grad():
        measured = measure_saturation(task, lambda: task(batch))
    epochs_run = int(metrics["train/epochs"])
    return Result(
        variant=f"lab: model={model} ({epochs_run} epochs, batch 10)",
        loss_floor=[metrics["test/loss"]],
        time_floor=0.0,
        exact_match=[metrics["test/exact_match"]],
        posted_check=[math.nan],
        enc_saturation=[measured["net.encoder.rnn"][0]],
        dec_saturation=[measured["net.decoder.rnn"][0]],
        steps=epochs_run * math.ceil(N_DATA / 10),
        seconds=[metrics["train/wall_time_s"]],
    )


COLUMNS = (
    "variant",
    "loss floor (post: 0.2314)",
    "floor forced by the softmax over time",
    "exact match (greedy)",
    "post's check (teacher-forced argmax)",
    "saturated encoder",
    "saturated decoder",
    "steps",
    "train time (s)",
)


def table(results: list[Result]) -> str:
    """Markdown, one row per variant; several seeds show as mean (min..max)."""
    rows = [
        (
            r.variant,
            mean_and_range(r.loss_floor, 4),
            f"{r.time_floor:.4f}",
            mean_and_range(r.exact_match, 2),
            mean_and_range(r.posted_check, 2),
            mean_and_range(r.enc_saturation, 2),
            mean_and_range(r.dec_saturation, 2),
            str(r.steps),
            f"{sum(r.seconds) / len(r.seconds):.1f}",
        )
        for r in results
    ]
    return markdown_table(COLUMNS, rows)


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, hist) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for r in results:
        if r.curve:
            curves.plot(np.arange(1, len(r.curve) + 1), r.curve, lw=0.8, label=r.variant)
    curves.axhline(POSTED_FLOOR, color="k", ls=":", lw=1, label=f"the post's floor {POSTED_FLOOR}")
    curves.set(yscale="log", xlabel="step", ylabel="training loss (NLL, as printed)", title="Loss per step")
    curves.legend(fontsize=7)
    for r in results:
        if r.hidden and r.variant in ("as posted", "all fixed"):
            hist.hist(
                r.hidden,
                bins=80,
                range=(-1, 1),
                alpha=0.55,
                density=True,
                label=f"{r.variant}: {r.enc_saturation[0]:.0%} / {r.dec_saturation[0]:.0%} |h| > 0.99",
            )
    hist.set(xlabel="hidden value (encoder and decoder, 50 examples)", ylabel="density", title="Saturation")
    hist.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps (the post printed 490)")
    parser.add_argument(
        "--seeds", default="0,1,2", help="torch seeds of the weights; the data is the post's (numpy seed 0)"
    )
    parser.add_argument(
        "--lab-epochs", type=int, default=None, help="cap on the lab's epochs (default 150, early stopping)"
    )
    parser.add_argument("--lab-models", default="seq2seq,seq2seq_post", help="comma-separated; empty for none")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "reproductions")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    np.random.seed(0)
    batches = load_data(N_DATA, MIN_LEN, MAX_LEN, VOCAB)
    results = []
    for variant in VARIANTS:
        result = Result(variant.name)
        for seed in (int(s) for s in args.seeds.split(",")):
            run_variant(variant, batches, args.steps, seed, result)
        print(f"{variant.name}: loss floor {result.loss_floor}, exact match {result.exact_match}", flush=True)
        results.append(result)
    for model in filter(None, args.lab_models.split(",")):
        results.append(run_lab(model, args.lab_epochs, args.out))

    text = table(results)
    print(text)
    (args.out / "seq2seq_post.md").write_text(text + "\n")
    (args.out / "seq2seq_post.json").write_text(
        json.dumps([{k: v for k, v in vars(r).items() if k not in ("curve", "hidden")} for r in results], indent=2)
        + "\n"
    )
    plot(results, args.out / "seq2seq_post.png")
    print(f"wrote {args.out / 'seq2seq_post.md'} and {args.out / 'seq2seq_post.png'}")
    return results


if __name__ == "__main__":
    main()
