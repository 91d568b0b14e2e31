"""The train and eval entry points, end to end on the CPU."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src import runtime
from src.eval import evaluate
from src.train import train
from tests.conftest import TINY, compose_config


def test_fast_dev_run(make_cfg, tmp_path: Path) -> None:
    metrics = train(make_cfg("debug=fdr", tiny=False))
    assert {"val/loss", "val/mse", "val/mae", "val/skill", "test/mse", "test/skill"} <= set(metrics)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == pytest.approx(metrics)
    assert all(isinstance(v, float) for v in written.values())


def test_the_trainer_flag_alone_turns_the_progress_bar_off(tmp_path: Path) -> None:
    cfg = compose_config("train", ["trainer.enable_progress_bar=false", "debug=fdr"], tmp_path)
    assert "progress_bar" in cfg.callbacks  # the default callback stays configured: the flag drops it
    assert "test/skill" in train(cfg)


def test_overfit_reduces_the_loss(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("debug=overfit", "logger=csv", tiny=False)
    train(cfg)
    lines = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("train/loss_epoch")
    losses = [float(row.split(",")[column]) for row in lines[1:] if row.split(",")[column]]
    assert len(losses) == cfg.trainer.max_epochs
    assert losses[-1] < 0.5 * losses[0]
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 0.8 * (len(losses) - 1)


def test_run_dir_layout_and_eval_reproduces_test_metrics(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "callbacks.prediction_figure.every_n_epochs=1",
        tiny=False,
    )
    metrics = train(cfg)
    checkpoints = tmp_path / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file() and (checkpoints / "best.ckpt").is_file()
    assert not (checkpoints / "last.ckpt").is_symlink()
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 2 * 4  # after the final step
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    figures = events.Images("val/predictions")  # one per epoch, each with that epoch's predictions
    assert [f.step for f in figures] == [4, 8] and figures[0].encoded_image_string != figures[1].encoded_image_string
    # a checkpoint loads with torch's safe unpickler: no pickled callables in it
    torch.load(checkpoints / "best.ckpt", weights_only=True)

    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    eval_cfg = compose_config("eval", [f"ckpt_path={checkpoints / 'best.ckpt'}", "logger=[]"], eval_dir)
    # the eval config is handed the run's own config, as <run>/.hydra/config.yaml would be
    (tmp_path / ".hydra").mkdir()
    from omegaconf import OmegaConf

    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    evaluated = evaluate(eval_cfg)
    for name in ("test/mse", "test/mae", "test/skill", "test/loss"):
        assert evaluated[name] == pytest.approx(metrics[name], rel=1e-6)
    assert json.loads((eval_dir / "metrics.json").read_text()) == pytest.approx(evaluated)


def test_resume_from_last_checkpoint_continues_the_epochs(make_cfg, tmp_path: Path) -> None:
    first = make_cfg("trainer.max_epochs=2", "trainer.limit_train_batches=2", "test=false", tiny=False)
    train(first)
    last = tmp_path / "checkpoints" / "last.ckpt"
    resumed_dir = tmp_path / "resumed"
    resumed = compose_config("train", [*TINY, "trainer.max_epochs=3", f"ckpt_path={last}", "test=false"], resumed_dir)
    metrics = train(resumed)
    assert metrics["train/epochs"] == 3
    assert torch.load(resumed_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3 * 2


def test_missing_checkpoint_is_named(make_cfg, tmp_path: Path) -> None:
    cfg = compose_config("eval", [f"ckpt_path={tmp_path / 'nope.ckpt'}"], tmp_path)
    with pytest.raises(FileNotFoundError, match="ckpt_path="):
        evaluate(cfg)


class BlowUpInSecondEpoch(pl.Callback):
    """Drives the weights to inf after a first, healthy epoch has been checkpointed."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = 1e30


def test_nan_loss_stops_with_a_clear_error_and_keeps_files(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=8",
        "+callbacks.blow_up._target_=tests.test_train.BlowUpInSecondEpoch",
    )
    with pytest.raises(FloatingPointError, match="train/loss is nan"):
        train(cfg)
    # the first epoch's checkpoints survive the failure untouched
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in best["state_dict"].values())


class CrashInFourthEpoch(pl.Callback):
    """A failure at the start of the fourth epoch (Ctrl-C takes the same path, but exits the process);
    ``weights`` holds the weights each epoch ended with."""

    weights: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:
            CrashInFourthEpoch.weights.append({k: v.clone() for k, v in pl_module.state_dict().items()})
        if trainer.current_epoch == 3:
            on_disk = torch.load(Path(trainer.checkpoint_callback.dirpath) / "best.ckpt", weights_only=True)
            raise RuntimeError(f"crash in the fourth epoch; best.ckpt on disk is from epoch {on_disk['epoch']}")


def test_crashed_fit_writes_the_best_checkpoint_held_in_memory(make_cfg, tmp_path: Path) -> None:
    """Saves after the first are held in memory for save_interval_s; a fit that fails writes them, with
    the weights of the epoch they were made at, not those of the steps taken since."""
    CrashInFourthEpoch.weights = []
    cfg = make_cfg(
        "trainer.max_epochs=6",
        "trainer.limit_train_batches=4",
        "callbacks.model_checkpoint.save_interval_s=1e9",
        "logger=csv",
        "test=false",
        "+callbacks.crash._target_=tests.test_train.CrashInFourthEpoch",
        tiny=False,
    )
    with pytest.raises(RuntimeError, match="best.ckpt on disk is from epoch 0"):  # the first save only
        train(cfg)
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    column = header.index("val/loss")
    val_losses = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    assert len(val_losses) == 3
    best_epoch = min(range(3), key=val_losses.__getitem__)
    assert best_epoch > 0  # so it was held, not written when made
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] == best_epoch
    torch.testing.assert_close(best["state_dict"], CrashInFourthEpoch.weights[best_epoch], rtol=0, atol=0)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3 * 4 and not (tmp_path / "checkpoints" / "last.ckpt").is_symlink()


class RecordLastOnDisk(pl.Callback):
    """The global step of the state in last.ckpt on disk when each epoch starts (after the first)."""

    steps: list[int] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:
            trainer.checkpoint_callback._files.wait()  # the writes of the epoch before have landed
            path = (Path(trainer.checkpoint_callback.dirpath) / "last.ckpt").resolve()
            RecordLastOnDisk.steps.append(torch.load(path, weights_only=True)["global_step"])


@pytest.mark.parametrize("interval,steps_on_disk", [(0, [4, 8, 12]), (1e9, [4, 4, 4])])
def test_last_checkpoint_is_saved_only_when_a_write_is_due(
    make_cfg, monkeypatch: pytest.MonkeyPatch, interval: float, steps_on_disk: list
) -> None:
    """0 saves last.ckpt after every epoch; a longer interval keeps the first until the end of fit, and
    does not even copy the epochs' states in between (only a new best's, held)."""
    from src.callbacks import LastAndBestCheckpoint

    RecordLastOnDisk.steps, saves = [], []
    save = LastAndBestCheckpoint._save_checkpoint

    def recorded(self, trainer: pl.Trainer, filepath: str) -> None:
        saves.append((trainer.current_epoch, Path(filepath).name))
        save(self, trainer, filepath)

    monkeypatch.setattr(LastAndBestCheckpoint, "_save_checkpoint", recorded)
    cfg = make_cfg(
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=4",
        f"callbacks.model_checkpoint.save_interval_s={interval}",
        "test=false",
        "+callbacks.last_on_disk._target_=tests.test_train.RecordLastOnDisk",
        "model.optimizer.lr=0",  # no epoch after the first improves: last.ckpt is a file of its own
    )
    train(cfg)
    assert RecordLastOnDisk.steps == steps_on_disk
    # Epoch 0's best.ckpt, and last.ckpt as a link to it; then last.ckpt of its own, where due.
    assert saves == [(0, "best.ckpt")] + ([] if interval else [(1, "last.ckpt"), (2, "last.ckpt"), (3, "last.ckpt")])
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 16  # the end of fit writes the final state whatever the interval


class ScriptedMonitor(pl.Callback):
    """At each validation end (before the checkpoint callback, which Lightning runs last): ``scripted``,
    the value a test's checkpoint monitors, from ``scores``, and the checkpoint's clock at 0.4 s an epoch."""

    now = [0.0]

    def __init__(self, scores: list[float]) -> None:
        self.scores = scores

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            ScriptedMonitor.now[0] = 0.4 * trainer.current_epoch
            trainer.callback_metrics["scripted"] = torch.tensor(self.scores[trainer.current_epoch])


def scripted_checkpoint_run(make_cfg, monkeypatch: pytest.MonkeyPatch, scores: list[float], *overrides: str) -> Path:
    RecordLastOnDisk.steps = []
    monkeypatch.setattr("src.callbacks.checkpoint.time", SimpleNamespace(monotonic=lambda: ScriptedMonitor.now[0]))
    cfg = make_cfg(
        f"trainer.max_epochs={len(scores)}",
        "trainer.limit_train_batches=4",
        "test=false",
        "callbacks.model_checkpoint.monitor=scripted",
        "callbacks.model_checkpoint.mode=min",
        "+callbacks.scripted._target_=tests.test_train.ScriptedMonitor",
        f"+callbacks.scripted.scores={scores}",
        "+callbacks.last_on_disk._target_=tests.test_train.RecordLastOnDisk",
        *overrides,
    )
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints"


def test_a_last_checkpoint_skipped_between_writes_is_saved_at_the_next_write(make_cfg, monkeypatch) -> None:
    """save_last=true (Lightning asks for last.ckpt only where the top k improved): epoch 1 improves
    0.4 s after the first write, its last.ckpt waits, and epoch 3, at 1.2 s, saves its own state."""
    checkpoints = scripted_checkpoint_run(
        make_cfg, monkeypatch, [3.0, 2.0, 5.0, 5.0, 5.0, 5.0], "callbacks.model_checkpoint.save_last=true"
    )
    assert RecordLastOnDisk.steps == [4, 4, 4, 16, 16]  # last.ckpt at the start of epochs 1-5
    assert torch.load(checkpoints / "best.ckpt", weights_only=True)["epoch"] == 1


def test_a_waiting_last_checkpoint_never_costs_the_epoch_its_best(make_cfg, monkeypatch) -> None:
    """last.ckpt waits from epoch 1; epoch 3 improves as a write falls due (1.2 s). Lightning saves
    at the end of the training epoch and skips a step already saved: a last.ckpt saved earlier in that
    step (at validation end) made it skip epoch 3's best."""
    checkpoints = scripted_checkpoint_run(make_cfg, monkeypatch, [3.0, 5.0, 5.0, 2.0, 5.0])
    assert RecordLastOnDisk.steps == [4, 4, 4, 16]
    assert torch.load(checkpoints / "best.ckpt", weights_only=True)["epoch"] == 3


def test_a_replaced_best_is_removed_only_after_its_successor_is_written(make_cfg, monkeypatch) -> None:
    """Each epoch improves, and each best has a file of its own ({epoch}): while writes wait, the
    removal of the earlier best waits with them, so last.ckpt always points at a file on disk."""
    checkpoints = scripted_checkpoint_run(
        make_cfg,
        monkeypatch,
        [5.0, 4.0, 3.0, 2.0],
        "callbacks.model_checkpoint.filename='{epoch}'",
        "callbacks.model_checkpoint.save_interval_s=1e9",
    )
    assert RecordLastOnDisk.steps == [4, 4, 4]  # a link to epoch 0's best, whole, until fit ends
    assert sorted(path.name for path in checkpoints.iterdir()) == ["3.ckpt", "last.ckpt"]


class RecordGradNorms(pl.Callback):
    """The norm of the gradients the optimizer last stepped with (after a training step: Lightning's
    zero_grad comes before the next backward, and under manual optimization it calls no hook)."""

    norms: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if grads:
            RecordGradNorms.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


def test_trainer_gradient_clip_val_clips_the_regression_task(make_cfg) -> None:
    RecordGradNorms.norms = []
    grads = "+callbacks.grads._target_=tests.test_train.RecordGradNorms"
    # Lightning clips for trainer.gradient_clip_val only in its automatic optimization: one step per execution.
    cfg = make_cfg("trainer.gradient_clip_val=0.001", "model.steps_per_execution=1", "test=false", grads)
    train(cfg)
    assert RecordGradNorms.norms and max(RecordGradNorms.norms) <= 0.001 * 1.0001


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_model_gradient_clip_clips_the_token_task(make_cfg, steps_per_execution: int) -> None:
    RecordGradNorms.norms = []
    grads = "+callbacks.grads._target_=tests.test_train.RecordGradNorms"
    cfg = make_cfg(
        "model=seq2seq",
        "data=increment",
        "callbacks=seq2seq",
        "model.gradient_clip=0.001",
        f"model.steps_per_execution={steps_per_execution}",
        "trainer.limit_train_batches=6",
        "test=false",
        grads,
    )
    train(cfg)
    assert RecordGradNorms.norms and max(RecordGradNorms.norms) <= 0.001 * 1.0001


def test_negative_checkpoint_save_interval_is_refused_by_key() -> None:
    from src.callbacks import LastAndBestCheckpoint

    with pytest.raises(ValueError, match=r"callbacks.model_checkpoint.save_interval_s=-1"):
        LastAndBestCheckpoint(monitor="val/loss", save_interval_s=-1)


def test_fused_optimizer_with_clipping_under_mixed_precision_is_refused_by_key(make_cfg, tmp_path: Path) -> None:
    clip = ("trainer.gradient_clip_val=1.0", "model.steps_per_execution=1")
    cfg = make_cfg("trainer.precision=bf16-mixed", *clip)
    with pytest.raises(ValueError, match=r"model.optimizer.fused=true .*trainer.gradient_clip_val=1.0"):
        train(cfg)
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))  # refused before a step: nothing to resume
    train(make_cfg("trainer.precision=bf16-mixed", *clip, "model.optimizer.fused=false"))


def test_unknown_optimized_metric_is_named(make_cfg) -> None:
    with pytest.raises(KeyError, match="optimized_metric='val/nope'"):
        runtime.metric_value({"val/loss": 1.0}, "val/nope")


def test_a_fit_stopped_before_its_first_validation_still_reports_val_metrics(make_cfg, tmp_path: Path) -> None:
    """trainer.max_steps inside the first epoch: the final weights are validated, so that val/* (and the
    default optimized_metric) are reported, metrics.json included."""
    cfg = make_cfg("trainer.limit_train_batches=null", "+trainer.max_steps=3")
    metrics = train(cfg)
    assert metrics["val/loss"] > 0 and "val/skill" in metrics and "test/skill" in metrics
    assert runtime.metric_value(metrics, cfg.optimized_metric) == metrics[cfg.optimized_metric]
    assert json.loads((tmp_path / "metrics.json").read_text())["val/loss"] == pytest.approx(metrics["val/loss"])


@pytest.mark.slow
def test_repeat_vector_learns_the_seeded_continuation(make_cfg) -> None:
    """The README's main job: default config, skill >= 0.99 on held-out data."""
    metrics = train(make_cfg("model=repeat_vector", "data=seeded", tiny=False))
    assert metrics["test/skill"] >= 0.99
    from tests.test_diagnosis import assert_no_flag

    assert_no_flag(metrics, {"predicts_mean", "ignores_input", "saturated", "overfitting"})


def test_last_checkpoint_link_never_overwrites_best(make_cfg, tmp_path: Path) -> None:
    """During fit last.ckpt links to the newest save; the final write must replace the link, not
    write through it into best.ckpt."""
    cfg = make_cfg(
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=2",
        "model.optimizer.lr=0.5",
        "test=false",
        "logger=csv",
        tiny=False,
    )
    train(cfg)
    checkpoints = tmp_path / "checkpoints"
    assert not (checkpoints / "last.ckpt").is_symlink(), "fit ended with last.ckpt still a link"
    best = torch.load(checkpoints / "best.ckpt", weights_only=True)
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert last["global_step"] == 4 * 2
    # best.ckpt holds the epoch of lowest val/loss, whichever epoch that was, and not a later state
    rows = [r for r in csv.DictReader(next(tmp_path.glob("**/metrics.csv")).open()) if r.get("val/loss")]
    val_loss = {int(r["epoch"]): float(r["val/loss"]) for r in rows}
    best_epoch = min(val_loss, key=val_loss.get)
    assert (best["epoch"], best["global_step"]) == (best_epoch, (best_epoch + 1) * 2)
    if best_epoch != 3:
        assert any(not torch.equal(best["state_dict"][k], last["state_dict"][k]) for k in best["state_dict"])


def test_bench_script_prints_a_table_and_the_min_ratio_last(tmp_path: Path) -> None:
    """scripts/bench.py runs the paths of each preset (with ``--floor`` also the bare loop inside a plain
    Lightning fit), the same steps each, and ends with ``min ratio:``, the lab's smallest."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAB_OUTPUT_ROOT": str(tmp_path), "PYTHONPATH": str(root)}
    presets = ["repeat_vector/seeded", "seq2seq_post/increment"]
    result = subprocess.run(
        [sys.executable, "scripts/bench.py", "--steps", "1", "--floor", "--presets", *presets],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    rows = [line.split("|")[1:-1] for line in lines[-1 - len(presets) : -1]]
    assert [row[0].strip() for row in rows] == presets
    assert [int(row[1]) for row in rows] == [32, 79]  # one epoch of each dataset
    ratios = [float(row[4]) for row in rows]
    assert [row[5].strip() for row in rows] == [f"{ratio:.3f}-{ratio:.3f}" for ratio in ratios]  # one repeat
    assert lines[-1] == f"min ratio: {min(ratios):.3f}" and min(ratios) > 0
    for row in rows:  # the floor's steps/s over the bare loop's
        assert float(row[9]) == pytest.approx(float(row[8]) / float(row[3]), rel=0.01) and float(row[8]) > 0


def test_ddp_cpu_writes_one_run_with_metrics_over_both_ranks(tmp_path: Path) -> None:
    """trainer=ddp_cpu (two processes, each testing half of the split): one run dir, one metrics.json,
    and test metrics over the whole split, as one process testing the same checkpoint scores it."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAB_OUTPUT_ROOT": str(tmp_path), "PYTHONPATH": str(root)}
    args = [
        "trainer=ddp_cpu",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
        "logger=csv",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "src.train", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr + result.stdout  # Lightning's line: two processes ran
    (run_dir,) = list((tmp_path / "train" / "runs").iterdir())
    (metrics_file,) = list(tmp_path.rglob("metrics.json"))
    assert metrics_file.parent == run_dir
    metrics = json.loads(metrics_file.read_text())
    assert metrics["train/epochs"] == 2

    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    eval_cfg = compose_config("eval", [f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", "logger=[]"], eval_dir)
    evaluated = evaluate(eval_cfg)
    for name in ("test/mse", "test/mae", "test/skill", "test/loss"):
        assert metrics[name] == pytest.approx(evaluated[name], rel=1e-5), name


@pytest.mark.parametrize("steps_per_execution,noticed_at", [(1, 3), (8, 7)])
def test_a_nan_loss_stops_on_the_next_checked_step_before_any_checkpoint(
    make_cfg, tmp_path: Path, steps_per_execution: int, noticed_at: int
) -> None:
    """The loss is read on the host only on logged steps (one step per execution) or at each execution's
    end, and at the epoch's last: a NaN after step 0 is noticed on step 3 (log_every_n_steps=4) or 7 (8
    steps per execution), from the epoch's running sum, before validation saves it."""
    cfg = make_cfg(
        "model.optimizer.lr=1e30",
        "trainer.log_every_n_steps=4",
        "trainer.limit_train_batches=20",
        f"model.steps_per_execution={steps_per_execution}",
    )
    with pytest.raises(
        FloatingPointError,
        match=rf"train/loss is (nan|inf) at epoch 0, step {noticed_at} .*last good checkpoint: none yet",
    ):
        train(cfg)
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))
