"""Every bad input ends ``python -m src.train`` with one line naming the key or file, no traceback, a
non-zero exit, and every earlier run's files untouched. The commands run through tests/cli.py: one
interpreter start for all of them (a start costs ~5 s of imports here)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import ROOT, run_commands
from tests.conftest import QUIET

TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    *QUIET,
]
TOKENS = ["model=seq2seq", "data=increment"]
# (command line, what the error line must contain); {earlier} and {corrupt} are filled in below.
BAD_INPUTS = [
    (["model=seq2seq", "data=seeded"], "model=seq2seq trains on token sequences but data=seeded"),
    (["model.optimizer.lr=abc"], "model.optimizer.lr='abc' must be a number"),
    (
        ["model=repeat_vector", "data=increment"],
        "model=repeat_vector trains on real-valued sequences but data=increment",
    ),
    (
        ["model._target_=src.models.tasks.AnomalyDetectionTask"],
        "model._target_=AnomalyDetectionTask (model=repeat_vector) only reconstructs its input, but data=seeded",
    ),
    (["data.n_train=0"], "data.n_train=0"),
    (["data.n_train=ten"], "data.n_train='ten' must be an integer"),
    (["data.batch_size=2.5"], "data.batch_size=2.5 must be an integer"),
    (["data.seed_index=7"], "data.seed_index=7"),
    (["data.rule=bogus"], "data.rule='bogus'"),
    (["+data.horizon=3"], "data.horizon is not a setting of src.data.seeded.SeededDataModule"),
    (["data=sine", "data.mode=forecast"], "data.target_length=16"),
    (["data=sine", "data.freq_high=0.9"], "data.freq_high=0.9"),
    ([*TOKENS, "data.min_len=9", "data.max_len=3"], "data.min_len=9"),
    ([*TOKENS, "data.max_word=200"], "data.max_word + 1 < data.vocab_size"),
    ([*TOKENS, "data.task=add"], "data.task='add'"),
    ([*TOKENS, "model.beam_size=0"], "model.beam_size=0"),
    ([*TOKENS, "model.net.attention=luong"], "model.net.attention='luong'"),
    (["model.net.hidden_size=0"], "model.net.hidden_size=0"),
    (["model.net.cell=bogus"], "model.net.cell='bogus'"),
    (["model.net.dropout=1.5"], "model.net.dropout=1.5"),
    (["model.net.target_length=7"], "model.net.target_length=7"),
    (["model.loss=huber"], "model.loss='huber'"),
    (["model.teacher_forcing=2"], "model.teacher_forcing=2"),
    (["model.optimizer.fused=maybe"], "model.optimizer.fused='maybe'"),
    (["model.compile=fast"], "model.compile='fast' must be true or false or one of ('default', 'reduce-overhead'"),
    (["seed=abc"], "seed='abc'"),
    (["train=yes please"], "train='yes please'"),
    (["trainer.max_epochs=-3"], "trainer.max_epochs=-3"),
    (["trainer.max_epochs=ten"], "trainer.max_epochs='ten'"),
    (["trainer.precision=abc"], "trainer.precision='abc' must be one of"),
    (["trainer.devices=0"], "trainer.devices=0"),
    (["trainer.accelerator=quantum"], "trainer.accelerator='quantum'"),
    (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1"),
    (["callbacks.model_checkpoint.save_interval_s=-1"], "callbacks.model_checkpoint.save_interval_s=-1"),
    (["callbacks.prediction_figure.every_n_epochs=often"], "callbacks.prediction_figure.every_n_epochs='often'"),
    (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path=/nonexistent/last.ckpt: no such file"),
    (["ckpt_path={corrupt}"], "is not a readable checkpoint"),
    (
        ["ckpt_path={earlier}", "trainer.max_epochs=2", "model.net.hidden_size=50"],
        "holds another model (trained with model=repeat_vector, data=seeded)",
    ),
    (["ckpt_path={earlier}", "trainer.max_epochs=2", "model=stacked_lstm"], "holds another model"),
    (["ckpt_path=last", "trainer.max_epochs=1"], "leaves nothing to train"),
    (["model.optimizer.lr=1e30"], "FloatingPointError: train/loss is nan at epoch 0"),
]
ERROR_LINE = re.compile(r"^\w+(Error|Exception): ")


def digest(run_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], dict[str, str], dict[str, str], Path]:
    """An earlier, successful run; then every bad input in the same output root; the earlier run's digests
    before and after."""
    root = tmp_path_factory.mktemp("outputs")
    runs = root / "train" / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAB_OUTPUT_ROOT": str(root)}
    (earlier_run,) = run_commands([{"args": TINY, "watch": str(runs)}], env)
    assert earlier_run["rc"] == 0, earlier_run["output"][-3000:]
    earlier_dir = Path(earlier_run["created"][0])
    corrupt = root / "corrupt.ckpt"
    corrupt.write_bytes((earlier_dir / "checkpoints" / "last.ckpt").read_bytes()[:2000])
    before = digest(earlier_dir)
    fill = {"earlier": earlier_dir / "checkpoints" / "last.ckpt", "corrupt": corrupt}
    commands = [{"args": [*TINY, *(a.format(**fill) for a in args)], "watch": str(runs)} for args, _ in BAD_INPUTS]
    return run_commands(commands, env), before, digest(earlier_dir), earlier_dir


@pytest.mark.parametrize("index", range(len(BAD_INPUTS)), ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_naming_the_key(outcomes, index: int) -> None:
    results, _, _, _ = outcomes
    args, expected = BAD_INPUTS[index]
    result = results[index]
    assert result["rc"] != 0, result["output"][-2000:]
    assert "Traceback" not in result["output"], result["output"][-3000:]
    lines = [line for line in result["output"].splitlines() if ERROR_LINE.match(line)]
    assert len(lines) == 1 and expected in lines[0], result["output"][-2000:]
    (run_dir,) = [Path(p) for p in result["created"]]  # a directory of its own, even in the same second
    assert (run_dir / "error.txt").read_text() == lines[0] + "\n"


def test_bad_inputs_leave_the_earlier_run_byte_identical(outcomes) -> None:
    results, before, after, earlier_dir = outcomes
    assert before == after and "checkpoints/last.ckpt" in before
    created = [p for r in results for p in r["created"]]
    assert len(created) == len(set(created)) == len(BAD_INPUTS) and str(earlier_dir) not in created


def test_a_nan_loss_leaves_its_failure_in_metrics_json(outcomes) -> None:
    import json

    results, _, _, _ = outcomes
    index = next(i for i, (args, _) in enumerate(BAD_INPUTS) if "model.optimizer.lr=1e30" in args)
    (run_dir,) = [Path(p) for p in results[index]["created"]]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (
        metrics["error"].startswith("FloatingPointError: train/loss is nan")
        and "last good checkpoint" in metrics["error"]
    )
    step = int(re.search(r"step (\d+)", metrics["error"]).group(1))
    assert metrics["train/failed_at_step"] == step and metrics["model/params"] > 0


def test_a_real_subprocess_prints_what_the_runner_prints(outcomes, tmp_path: Path) -> None:
    """tests/cli.py is `python -m src.train` minus the start-up: one case run both ways prints the same line."""
    results, _, _, _ = outcomes
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAB_OUTPUT_ROOT": str(tmp_path)}
    process = subprocess.run(
        [sys.executable, "-m", "src.train", *TINY, *BAD_INPUTS[0][0]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode != 0
    expected = [line for line in results[0]["output"].splitlines() if ERROR_LINE.match(line)]
    assert [line for line in (process.stdout + process.stderr).splitlines() if ERROR_LINE.match(line)] == expected
