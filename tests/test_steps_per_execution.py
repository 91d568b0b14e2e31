"""A task's speed options: model.steps_per_execution (K optimizer steps per Lightning step make exactly the
updates of one), model.compile and data.on_device."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from src.checks import ConfigError
from src.data.batch import SeqBatch
from src.data.seeded import SeededDataModule
from src.train import train
from tests.conftest import QUIET, compose_config

# 200 examples in batches of 16: 13 batches an epoch, so K = 5 leaves a group of 3 at each epoch's end.
SMALL = ["data.n_train=200", "data.n_val=32", "data.n_test=32", "data.batch_size=16", "trainer.max_epochs=3"]
# mode=max: the plateau scheduler halves the lr on every epoch whose val/loss fell, so its steps show.
HALVING = ["model/scheduler=plateau", "model.scheduler.mode=max", "model.scheduler.patience=0"]
PRESETS = {
    # gradient_clip=0.01 clips every step: a path that skipped clipping would drift off.
    "regression": ["model=autoregressive_rnn", "data=seeded", "model.gradient_clip=0.01", *HALVING],
    # Teacher forcing 0.5 and dropout draw random numbers every step: the draws must line up too.
    "tokens": [
        "model=seq2seq",
        "data=increment",
        "data.max_len=6",
        "model.net.hidden_size=16",
        "model.net.embedding_dim=8",
        "model.teacher_forcing=0.5",
        *HALVING,
    ],
}


def fit(run_dir: Path, overrides: list[str]) -> dict:
    """The last checkpoint of a run with ``overrides``, and its metrics as ``"metrics"``."""
    metrics = train(compose_config("train", [*QUIET, "test=false", *overrides], run_dir))
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return {**checkpoint, "metrics": metrics}


@pytest.mark.parametrize("preset", PRESETS)
def test_k_steps_per_execution_make_the_updates_of_one(tmp_path: Path, preset: str) -> None:
    one, five = (fit(tmp_path / f"k{k}", [*PRESETS[preset], *SMALL, f"model.steps_per_execution={k}"]) for k in (1, 5))
    assert five["global_step"] == one["global_step"] == 3 * 13
    for name, weight in one["state_dict"].items():
        assert torch.equal(weight, five["state_dict"][name]), name
    assert five["lr_schedulers"] == one["lr_schedulers"]
    assert five["lr_schedulers"][0]["_last_lr"][0] <= 3e-3 / 2  # halved on the epochs val/loss fell
    one_adam, five_adam = one["optimizer_states"][0]["state"], five["optimizer_states"][0]["state"]
    assert all(torch.equal(one_adam[i]["exp_avg_sq"], five_adam[i]["exp_avg_sq"]) for i in one_adam)
    # The loggers' x axis (and log_every_n_steps) counts optimizer steps, not Lightning's steps.
    loop = "epoch_loop.state_dict"
    stepped = [run["loops"]["fit_loop"][loop]["_batches_that_stepped"] for run in (one, five)]
    assert stepped[0] == stepped[1] == 3 * 13
    timeless = [{k: v for k, v in run["metrics"].items() if "wall_time" not in k} for run in (one, five)]
    assert timeless[0] == timeless[1]


class GradientCounter(pl.Callback):
    """A callback that acts on every optimizer step's gradients."""

    steps = 0

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        GradientCounter.steps += 1


def test_a_callback_on_every_backward_sees_each_optimizer_step_of_an_execution(tmp_path: Path) -> None:
    # Without such a callback each step skips Lightning's hook dispatch; with one, it goes through it.
    overrides = [*PRESETS["regression"], *SMALL, "model.steps_per_execution=5"]
    GradientCounter.steps = 0
    counted = fit(tmp_path / "counted", [*overrides, f"+callbacks.counter._target_={__name__}.GradientCounter"])
    assert GradientCounter.steps == counted["global_step"] == 3 * 13
    direct = fit(tmp_path / "direct", overrides)
    for name, weight in direct["state_dict"].items():
        assert torch.equal(weight, counted["state_dict"][name]), name


class HalvedSeeded(SeededDataModule):
    """Seeded data whose batch hooks (a user's augmentation, say) halve the source before and double the
    target after the transfer, and count the training batches each sees."""

    seen = {"before": 0, "after": 0}

    def on_before_batch_transfer(self, batch: SeqBatch, dataloader_idx: int) -> SeqBatch:
        HalvedSeeded.seen["before"] += self.trainer.training
        return batch._replace(src=batch.src / 2)

    def on_after_batch_transfer(self, batch: SeqBatch, dataloader_idx: int) -> SeqBatch:
        HalvedSeeded.seen["after"] += self.trainer.training
        return batch._replace(tgt=batch.tgt * 2)


def test_the_batch_transfer_hooks_see_every_batch_of_an_execution(tmp_path: Path) -> None:
    # Lightning hands a dataloader_iter training step the raw batches: the execution applies the hooks itself.
    overrides = [*PRESETS["regression"], *SMALL, f"data._target_={__name__}.HalvedSeeded"]
    runs = {}
    for k in (1, 5):
        HalvedSeeded.seen = {"before": 0, "after": 0}
        runs[k] = fit(tmp_path / f"k{k}", [*overrides, f"model.steps_per_execution={k}"])
        assert HalvedSeeded.seen == {"before": 3 * 13, "after": 3 * 13}, k
    for name, weight in runs[1]["state_dict"].items():
        assert torch.equal(weight, runs[5]["state_dict"][name]), name


class MovedSeeded(SeededDataModule):
    """Seeded data whose own device transfer (a user's, say) halves the source and counts training batches."""

    moved = 0

    def transfer_batch_to_device(self, batch: SeqBatch, device: torch.device, dataloader_idx: int) -> SeqBatch:
        MovedSeeded.moved += self.trainer.training
        return super().transfer_batch_to_device(batch._replace(src=batch.src / 2), device, dataloader_idx)


def test_a_datamodules_own_transfer_sees_every_batch_of_an_execution(tmp_path: Path) -> None:
    # Where no transfer hook is overridden an execution moves its batches itself; this one is, so Lightning does.
    overrides = [*PRESETS["regression"], *SMALL, f"data._target_={__name__}.MovedSeeded"]
    runs = {}
    for k in (1, 5):
        MovedSeeded.moved = 0
        runs[k] = fit(tmp_path / f"k{k}", [*overrides, f"model.steps_per_execution={k}"])
        assert MovedSeeded.moved == 3 * 13, k
    plain = fit(tmp_path / "plain", [*PRESETS["regression"], *SMALL, "model.steps_per_execution=5"])
    for name, weight in runs[1]["state_dict"].items():
        assert torch.equal(weight, runs[5]["state_dict"][name]), name
    assert not all(torch.equal(weight, plain["state_dict"][name]) for name, weight in runs[5]["state_dict"].items())


def test_max_steps_stops_inside_an_execution(tmp_path: Path) -> None:
    run = fit(tmp_path, [*PRESETS["regression"], *SMALL, "model.steps_per_execution=5", "+trainer.max_steps=7"])
    assert run["global_step"] == 7


@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.gradient_clip_val=1.0", "trainer.gradient_clip_val=1.0 needs model.steps_per_execution=1"),
        ("+trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches=2 needs model.steps_per_execution=1"),
        ("model.steps_per_execution=0", "model.steps_per_execution=0 must lie in [1"),
    ],
)
def test_what_one_step_per_execution_needs_is_refused_before_anything_runs(
    tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        train(compose_config("train", [*QUIET, "model.steps_per_execution=4", override], tmp_path))
    assert not (tmp_path / "checkpoints").exists()


def test_a_compiled_net_trains_and_saves_the_eager_nets_keys(tmp_path: Path) -> None:
    overrides = ["model=flux_rnn", "data=seeded", "data.n_train=64", "data.batch_size=32", "trainer.max_epochs=1"]
    eager = fit(tmp_path / "eager", overrides)
    compiled = fit(tmp_path / "compiled", [*overrides, "model.compile=true"])
    assert compiled["state_dict"].keys() == eager["state_dict"].keys()
    for name, weight in eager["state_dict"].items():
        assert torch.allclose(weight, compiled["state_dict"][name], atol=1e-5), name


@pytest.mark.parametrize("setting,mode", [("true", None), ("reduce-overhead", "reduce-overhead"), ("false", "eager")])
def test_model_compile_names_torch_compiles_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, mode: str | None
) -> None:
    """model.compile=true compiles in torch's default mode, a mode name in that mode (reduce-overhead: CUDA
    graphs on a GPU), false not at all."""
    from hydra.utils import instantiate

    task = instantiate(compose_config("train", [f"model.compile={setting}"], tmp_path).model)
    modes = []
    monkeypatch.setattr(task.net, "compile", lambda mode=None: modes.append(mode))
    task.configure_model()
    task.configure_model()  # Lightning may call it again (a second fit): the net is compiled once
    assert modes == ([] if mode == "eager" else [mode])


@pytest.mark.parametrize("setting", [1, 0, "fast"])
def test_model_compile_refuses_what_is_neither_a_bool_nor_a_mode(tmp_path: Path, setting: object) -> None:
    """1 and 0 equal True and False in Python, but a task built in code must not take them for a bool."""
    from hydra.utils import get_class, instantiate

    model = compose_config("train", [], tmp_path).model
    with pytest.raises(ConfigError, match=r"^model\.compile="):
        get_class(model._target_)(net=instantiate(model.net), optimizer=torch.optim.Adam, compile=setting)


@pytest.mark.parametrize("preset", [["model=repeat_vector", "data=seeded"], ["model=seq2seq", "data=increment"]])
def test_data_on_the_device_trains_as_data_on_the_host(tmp_path: Path, preset: list[str]) -> None:
    sizes = ["data.n_train=64", "data.n_val=16", "data.n_test=16", "data.batch_size=16", "trainer.max_epochs=2"]
    small = [*preset, *sizes]
    host = fit(tmp_path / "host", small)
    device = fit(tmp_path / "device", [*small, "data.on_device=true"])
    for name, weight in host["state_dict"].items():
        assert torch.equal(weight, device["state_dict"][name]), name


def logged_step_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, train/loss_step) of each row of the run's CSV log that has one."""
    lines = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    step, loss = header.index("step"), header.index("train/loss_step")
    rows = [row.split(",") for row in lines[1:]]
    return [(int(row[step]), float(row[loss])) for row in rows if row[loss]]


def test_the_loggers_get_the_step_losses_of_one_step_per_execution(tmp_path: Path) -> None:
    # Every 4th optimizer step's loss, whichever execution it falls in (13 batches an epoch, K = 5).
    common = [*PRESETS["regression"], *SMALL, "logger=csv", "trainer.log_every_n_steps=4"]
    fit(tmp_path / "one", [*common, "model.steps_per_execution=1"])
    fit(tmp_path / "five", [*common, "model.steps_per_execution=5"])
    one, five = logged_step_losses(tmp_path / "one"), logged_step_losses(tmp_path / "five")
    assert [step for step, _ in five] == [step for step, _ in one] == [3, 7, 11, 15, 19, 23, 27, 31, 35]
    assert [loss for _, loss in five] == pytest.approx([loss for _, loss in one], rel=1e-6)


class StepLossesFail(pl.loggers.CSVLogger):
    """A logger that fails on every step loss it is given."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "train/loss_step" in metrics:
            raise OSError("disk full")
        super().log_metrics(metrics, step)


def test_a_logger_failing_after_a_nan_leaves_the_nan_as_the_error(tmp_path: Path) -> None:
    overrides = [*PRESETS["regression"], *SMALL, "trainer.log_every_n_steps=2", "model.optimizer.lr=1e30"]
    logger = [f"+logger.failing._target_={__name__}.StepLossesFail", f"+logger.failing.save_dir={tmp_path}"]
    with pytest.raises(FloatingPointError, match="at epoch 0, step 7 "):
        fit(tmp_path, [*overrides, *logger, "model.steps_per_execution=8"])


def test_the_step_losses_before_a_nan_reach_the_loggers(tmp_path: Path) -> None:
    # lr=1e30: step 0's update blows the weights up, so every later loss is not finite. With K = 8 the NaN
    # is noticed at step 7, the execution's end; the losses logged on its way (steps 1, 3, 5) are written.
    overrides = [*PRESETS["regression"], *SMALL, "logger=csv", "trainer.log_every_n_steps=2", "model.optimizer.lr=1e30"]
    with pytest.raises(FloatingPointError, match="at epoch 0, step 7 "):
        fit(tmp_path, [*overrides, "model.steps_per_execution=8"])
    assert [step for step, _ in logged_step_losses(tmp_path)] == [1, 3, 5]
