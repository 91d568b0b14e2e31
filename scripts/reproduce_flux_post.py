"""Reproduce the Flux.jl post "my RNN learns only the mean of the sequence", then fix it one defect at a time.

The post trains ``Chain(Dense(1,3), LSTM(3,3), Dense(3,5,relu), Dense(5,1))`` to continue sequences
whose 5 seeds are uniform in [-1, 1] and whose 5 next values follow ``x[t] = x[t-1] + 0.5 * seed4``;
its generated continuations come out flat, whatever the seeds. This script is a line-by-line port
of its procedure to PyTorch (data, model and Flux's initialisation, ``batchSequences``, ``myloss``,
``Flux.train!`` with ADAM, ``predictSequence``), with a switch for each defect:

- ``targets``: ``batchSequences(x, batchSize)`` starts with ``x = copy(xtrain)``: it ignores its
  argument, so the "targets" it batches are the unshuffled *inputs*, and ``myloss`` trains the net
  to output its current input (x[t] -> x[t]) instead of the next value;
- ``batch_size``: the same function then sets ``batchSize = 3`` (the loop asked for 16);
- ``warm_up``: ``predictSequence`` resets the state and starts generating from seed 5: seeds 1 to 4
  (and with them seed 4, the one the rule depends on) never reach the state at inference, while
  ``myloss`` did feed them in training;
- ``length``: ``predictSequence`` generates ``seqLength - 1`` = 4 values, not 5;
- ``free_running`` (exposure): ``myloss`` feeds the net the true x[i] at every step (teacher
  forcing), while ``predictSequence`` feeds it its own previous output: the 3-unit net is never
  trained on the inputs it gets when it generates;
- ``lr`` (budget): 20 epochs of ``Flux.ADAM()`` at its default 1e-3 leave this net far from trained.

Each variant is scored on the post's 100 validation sequences with the lab's ``SkillScore``
(1 - MSE / MSE of the per-position training mean: 0 = the unconditional mean) and the *rule gain*:
the slope of the generated per-step increment against the true one, ``0.5 * seed4`` (1 = follows
the seed that drives the rule, 0 = ignores it, as a flat line does), as the mean (min..max) over
``--seeds`` (each seed draws its own data and initial weights). Variants that differ only in
generation share one training run. The last rows train the lab's own models on its ``seeded`` data
(the same problem, scored on its test split) with ``src.train``.

    python scripts/reproduce_flux_post.py                       # about 6 minutes on one core
    python scripts/reproduce_flux_post.py --seeds 0 --epochs 2 --n-train 60 --lab-epochs 1   # seconds

Prints a markdown table and writes ``flux_post.md``, ``flux_post.json`` and the prediction plot
``flux_post_predictions.png`` (true and generated sequences, one row per variant) into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: this worktree's src, not an installed copy
    sys.path.insert(0, str(ROOT))

from src.metrics.skill import SkillScore  # noqa: E402
from src.reporting import compose_train_config, markdown_table, mean_and_range  # noqa: E402

N_SEEDS, SEQ_LENGTH, RULE_SEED = 5, 5, 3  # the post's nSeeds, seqLength, and its 4th seed (0-based 3)


@dataclass(frozen=True)
class Variant:
    """Which of the post's defects are fixed. ``warm_up`` and ``length`` change generation only."""

    name: str
    targets: bool = False
    batch_size: bool = False
    warm_up: bool = False
    length: bool = False
    free_running: bool = False
    lr: float = 1e-3  # Flux.ADAM()'s default

    def training(self) -> tuple:
        """What decides the trained weights: variants that share it share one training run."""
        return (self.targets, self.batch_size, self.free_running, self.lr)


ALL_FIXED = dict(targets=True, batch_size=True, warm_up=True, length=True, free_running=True, lr=1e-2)
VARIANTS = (
    Variant("as posted"),
    Variant("fix targets (batchSequences uses its argument)", targets=True),
    Variant("fix batch size (16, not 3)", batch_size=True),
    Variant("fix generation warm-up (seeds 1-4 fed)", warm_up=True),
    Variant("fix generation length (5 values, not 4)", length=True),
    Variant("fix exposure (train free-running)", free_running=True),
    Variant("fix budget (lr 1e-2, not 1e-3)", lr=1e-2),
    Variant("the two bugs fixed (targets + warm-up)", targets=True, warm_up=True),
    Variant("all fixed but free-running", **{**ALL_FIXED, "free_running": False}),
    Variant("all fixed but lr", **{**ALL_FIXED, "lr": 1e-3}),
    Variant("all fixed", **ALL_FIXED),
)


def make_data(n_total: int, rng: np.random.Generator) -> np.ndarray:
    """``makeSequence.(makeSeeds.(...))``: (n_total, nSeeds + seqLength) float32 sequences."""
    seeds = 2 * (rng.random((n_total, N_SEEDS)) - 0.5)
    seq = np.empty((n_total, N_SEEDS + SEQ_LENGTH), dtype=np.float32)
    seq[:, :N_SEEDS] = seeds
    for i in range(N_SEEDS, N_SEEDS + SEQ_LENGTH):
        seq[:, i] = seq[:, i - 1] + seeds[:, RULE_SEED] * 0.5
    return seq


def glorot_(weight: torch.Tensor) -> None:
    nn.init.xavier_uniform_(weight)


class FluxChain(nn.Module):
    """``Chain(Dense(1,3), LSTM(3,3), Dense(3,5,relu), Dense(5,1))`` with Flux's initialisation:
    Glorot-uniform weights, zero biases, LSTM forget-gate bias 1, and a trainable initial state
    (Flux's ``state0``, which ``Flux.reset!`` restores)."""

    def __init__(self) -> None:
        super().__init__()
        self.dense_in = nn.Linear(1, 3)
        self.lstm = nn.LSTM(3, 3)
        self.head = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))
        for layer in (self.dense_in, self.head[0], self.head[2]):
            glorot_(layer.weight)
            nn.init.zeros_(layer.bias)
        glorot_(self.lstm.weight_ih_l0)
        glorot_(self.lstm.weight_hh_l0)
        nn.init.zeros_(self.lstm.bias_ih_l0)
        nn.init.zeros_(self.lstm.bias_hh_l0)
        with torch.no_grad():
            self.lstm.bias_ih_l0[3:6] = 1.0  # gate order i, f, g, o in both libraries
        self.h0 = nn.Parameter(torch.zeros(1, 1, 3))
        self.c0 = nn.Parameter(torch.zeros(1, 1, 3))

    def reset(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.h0.expand(1, batch, 3).contiguous(), self.c0.expand(1, batch, 3).contiguous()

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """``x`` (T, B, 1), time-major as Flux's vector of (1, B) matrices; returns (T, B, 1), state."""
        out, state = self.lstm(self.dense_in(x), state)
        return self.head(out), state


def batch_sequences(x: np.ndarray, batch_size: int) -> list[torch.Tensor]:
    """The post's ``batchSequences``, with its argument used: (items, batch, 1) blocks, the tail dropped."""
    n_batches = len(x) // batch_size
    return [torch.from_numpy(x[b * batch_size : (b + 1) * batch_size].T.copy()).unsqueeze(-1) for b in range(n_batches)]


def my_loss(model: FluxChain, x: torch.Tensor, y: torch.Tensor, free_running: bool = False) -> torch.Tensor:
    """``myloss``: reset, feed x[1..nSeeds-1], then sum over steps of the batch-mean squared error of
    ``m(x[i])`` against ``y[i]``, i in nSeeds..end (``zip`` stops at the shorter of the two).

    ``free_running``: from x[nSeeds] on, each step is fed the net's previous output, not x[i].
    """
    if free_running:
        _, state = model(x[: N_SEEDS - 1], model.reset(x.shape[1]))
        value, outputs = x[N_SEEDS - 1 : N_SEEDS], []
        for _ in range(len(x) - N_SEEDS):
            value, state = model(value, state)
            outputs.append(value)
        pred = torch.cat(outputs)
    else:
        pred = model(x[:-1], model.reset(x.shape[1]))[0][N_SEEDS - 1 :]
    target = y[N_SEEDS - 1 :][: len(pred)]
    pred = pred[: len(target)]
    return ((pred - target) ** 2).mean(dim=(1, 2)).sum()


@torch.no_grad()
def predict_sequence(model: FluxChain, seeds: torch.Tensor, n_generate: int, warm_up: bool) -> torch.Tensor:
    """``predictSequence`` for a batch of seed rows (B, nSeeds): the ``n_generate`` generated values (B, n).

    As posted (``warm_up=False``) the state is reset and generation starts from seed 5 alone;
    with ``warm_up`` seeds 1-4 go through the net first, as ``myloss`` does in training.
    """
    state = model.reset(seeds.shape[0])
    if warm_up:
        _, state = model(seeds[:, : N_SEEDS - 1].T.unsqueeze(-1), state)
    value = seeds[:, N_SEEDS - 1].view(1, -1, 1)
    generated = []
    for _ in range(n_generate):
        value, state = model(value, state)
        generated.append(value[0, :, 0])
    return torch.stack(generated, dim=1)


@dataclass
class Result:
    """One variant's scores (over seeds: lists) on the post's 100 validation sequences."""

    variant: str
    skill: list[float] = field(default_factory=list)
    rule_gain: list[float] = field(default_factory=list)
    val_mse: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: list[float] = field(default_factory=list)
    examples: dict = field(default_factory=dict)


def rule_gain(generated: torch.Tensor, seeds: torch.Tensor) -> float:
    """Least-squares slope of the generated mean per-step increment on the true one, 0.5 * seed4."""
    steps = torch.cat([seeds[:, N_SEEDS - 1 : N_SEEDS], generated], dim=1).diff(dim=1).mean(dim=1).double()
    true = 0.5 * seeds[:, RULE_SEED].double()
    true = true - true.mean()
    return float((true * (steps - steps.mean())).sum() / (true * true).sum())


def skill(generated: torch.Tensor, truth: torch.Tensor, baseline: torch.Tensor) -> float:
    metric = SkillScore(baseline.unsqueeze(-1))
    metric.update(generated.unsqueeze(-1), truth.unsqueeze(-1))
    return float(metric.compute())


def train(variant: Variant, seqs: np.ndarray, n_train: int, epochs: int, seed: int) -> tuple[FluxChain, int, float]:
    """Train the post's chain as the post's loop does, with the variant's fixes: (model, steps, seconds)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = FluxChain()
    opt = torch.optim.Adam(model.parameters(), lr=variant.lr, betas=(0.9, 0.999), eps=1e-8)  # Flux.ADAM()
    xtrain = seqs[:n_train]
    batch_size = 16 if variant.batch_size else 3
    start, steps = time.perf_counter(), 0
    for _ in range(epochs):
        xtraine = xtrain[rng.permutation(n_train)]
        # As posted, batchSequences batches the global, unshuffled xtrain for x *and* for y.
        xb = batch_sequences(xtraine if variant.targets else xtrain, batch_size)
        yb = [x[1:] for x in xb] if variant.targets else xb  # y = s[2:end]: the next value
        for x, y in zip(xb, yb):
            opt.zero_grad()
            my_loss(model, x, y, variant.free_running).backward()
            opt.step()
            steps += 1
    return model, steps, time.perf_counter() - start


def score(
    model: FluxChain, variant: Variant, seqs: np.ndarray, n_train: int, result: Result, plot_ids: list[int]
) -> None:
    """Generate as the variant's ``predictSequence`` does and add its scores on the validation split to ``result``."""
    n_generate = SEQ_LENGTH if variant.length else SEQ_LENGTH - 1
    seeds = torch.from_numpy(seqs[:, :N_SEEDS])
    continuation = torch.from_numpy(seqs[:, N_SEEDS : N_SEEDS + n_generate])
    generated = predict_sequence(model, seeds, n_generate, variant.warm_up)
    val = slice(n_train, None)
    result.skill.append(skill(generated[val], continuation[val], continuation[:n_train].mean(dim=0)))
    result.rule_gain.append(rule_gain(generated[val], seeds[val]))
    # The post's own error: squared norm over the generated steps, averaged over sequences.
    result.val_mse.append(float(((generated[val] - continuation[val]) ** 2).sum(dim=1).mean()))
    if not result.examples:
        result.examples = {i: generated[i].tolist() for i in plot_ids}


def run_port(seqs_by_seed: dict[int, np.ndarray], n_train: int, epochs: int, plot_ids: list[int]) -> list[Result]:
    """Every variant for every seed; variants that differ only in generation share a training run."""
    results = {v.name: Result(v.name) for v in VARIANTS}
    for seed, seqs in seqs_by_seed.items():
        trained: dict[tuple, tuple[FluxChain, int, float]] = {}
        for variant in VARIANTS:
            if variant.training() not in trained:
                trained[variant.training()] = train(variant, seqs, n_train, epochs, seed)
            model, steps, seconds = trained[variant.training()]
            result = results[variant.name]
            result.steps, result.seconds = steps, [*result.seconds, seconds]
            score(model, variant, seqs, n_train, result, plot_ids)
            print(f"seed {seed} {variant.name}: skill {result.skill[-1]:.3f}", flush=True)
    return list(results.values())


def run_lab(model: str, epochs: int | None, out: Path) -> Result:
    """The lab's own ``model=<model> data=seeded`` run with ``src.train``, scored on its test split."""
    from hydra.utils import instantiate

    from src.train import train

    overrides = [
        f"model={model}",
        "data=seeded",
        "callbacks=[model_checkpoint,timer]",
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
    test = data.splits["test"]
    with torch.no_grad():
        pred = task.eval()(test)[..., 0]
    return Result(
        variant=f"lab: model={model} data=seeded ({int(metrics['train/epochs'])} epochs)",
        skill=[metrics["test/skill"]],
        rule_gain=[rule_gain(pred, test.src[..., 0])],
        val_mse=[float(((pred - test.tgt[..., 0]) ** 2).sum(dim=1).mean())],
        steps=int(metrics["train/epochs"]) * math.ceil(data.n_train / data.batch_size),
        seconds=[metrics["train/wall_time_s"]],
    )


COLUMNS = ("variant", "test skill", "rule gain", "post's val MSE", "steps", "train time (s)")


def table(results: list[Result]) -> str:
    """Markdown, one row per variant; several seeds show as mean (min..max)."""
    rows = [
        (
            r.variant,
            mean_and_range(r.skill),
            mean_and_range(r.rule_gain),
            mean_and_range(r.val_mse),
            str(r.steps),
            f"{sum(r.seconds) / len(r.seconds):.1f}",
        )
        for r in results
    ]
    return markdown_table(COLUMNS, rows)


def plot(results: list[Result], seqs: np.ndarray, plot_ids: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    posted = [r for r in results if r.examples]
    fig, axes = plt.subplots(
        len(posted),
        len(plot_ids),
        figsize=(2.6 * len(plot_ids), 1.9 * len(posted)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for row, result in zip(axes, posted):
        for ax, i in zip(row, plot_ids):
            ax.plot(range(1, N_SEEDS + SEQ_LENGTH + 1), seqs[i], color="k", lw=1.2, label="true")
            est = [seqs[i, N_SEEDS - 1], *result.examples[i]]
            ax.plot(range(N_SEEDS, N_SEEDS + len(est)), est, "o--", color="tab:red", ms=3, label="generated")
            ax.plot(RULE_SEED + 1, seqs[i, RULE_SEED], "s", color="tab:blue", ms=5, label="seed 4")
            ax.axvline(N_SEEDS + 0.5, color="0.8", lw=0.8)
        row[0].set_ylabel(result.variant.replace(" (", "\n("), fontsize=7)
    for ax, i in zip(axes[0], plot_ids):
        ax.set_title(f"validation seq {i}", fontsize=8)
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.suptitle("The Flux post's procedure: true sequence (black), generated continuation (red)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="the post's epochs (20)")
    parser.add_argument("--n-train", type=int, default=1000, help="the post's nTrains (1000); nVal is 100")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated; each seed draws its own data and weights")
    parser.add_argument(
        "--lab-epochs", type=int, default=None, help="epochs of the lab's runs (default: their config's)"
    )
    parser.add_argument("--lab-models", default="flux_rnn,repeat_vector", help="comma-separated; empty for none")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "reproductions")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    seeds = [int(s) for s in args.seeds.split(",")]
    seqs_by_seed = {seed: make_data(args.n_train + 100, np.random.default_rng(seed)) for seed in seeds}
    plot_ids = [args.n_train + k for k in range(4)]
    results = run_port(seqs_by_seed, args.n_train, args.epochs, plot_ids)
    for model in filter(None, args.lab_models.split(",")):
        results.append(run_lab(model, args.lab_epochs, args.out))

    text = table(results)
    print(text)
    (args.out / "flux_post.md").write_text(text + "\n")
    (args.out / "flux_post.json").write_text(
        json.dumps([{k: v for k, v in vars(r).items() if k != "examples"} for r in results], indent=2) + "\n"
    )
    plot(results, seqs_by_seed[seeds[0]], plot_ids, args.out / "flux_post_predictions.png")
    print(f"wrote {args.out / 'flux_post.md'} and {args.out / 'flux_post_predictions.png'}")
    return results


if __name__ == "__main__":
    main()
