"""Sweeps end to end: a real multirun with a failing job, compare.py, an Optuna search, launchers, HParams."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR, ROOT, TINY, config_options

# One batch per stage: a job takes a few seconds after the imports.
SWEEP_TINY = [o for o in TINY if o != "trainer.limit_train_batches=2"] + ["trainer.limit_train_batches=1"]
SUBPROCESS_TIMEOUT_S = 300


def load_compare() -> ModuleType:
    """``scripts/compare.py`` as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("compare", ROOT / "scripts" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def run_multirun(*overrides: str) -> subprocess.CompletedProcess:
    """``python -m src.train -m <overrides>`` in a subprocess, as a user would run it."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "src.train", "-m", *overrides, *SWEEP_TINY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )


def compose_with_hydra(*overrides: str):
    """The train config including the ``hydra`` node (launcher, sweeper), as ``-m`` would compose it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


# The three "LSTM autoencoders" of question 1, each also with `model.net.cell=bogus`: jobs that fail inside the run.
AUTOENCODERS = ("repeat_vector", "stacked_lstm", "encdec_ad")
SWEEP = ["model=" + ",".join(AUTOENCODERS), "model.net.cell=lstm,bogus"]
VARIANTS = [f"model={m} model.net.cell=lstm" for m in AUTOENCODERS]


@pytest.mark.slow
def test_multirun_with_a_failing_job_then_compare(tmp_path: Path) -> None:
    """3 models x 1 dataset plus jobs with a bad value: the others finish, compare.py ranks them, lists the failed."""
    sweep_dir = tmp_path / "sweep"
    result = run_multirun(*SWEEP, "data=seeded", f"hydra.sweep.dir={sweep_dir}")
    # Hydra's BasicSweeper re-raises a failed job after the whole batch ran: non-zero exit, all jobs ran
    assert result.returncode != 0, result.stdout[-2000:]
    jobs = {
        tuple(yaml.safe_load((p / ".hydra" / "overrides.yaml").read_text())): p
        for p in sweep_dir.iterdir()
        if p.name.isdigit()
    }
    bad = [job for overrides, job in jobs.items() if "model.net.cell=bogus" in overrides]
    good = [job for overrides, job in jobs.items() if "model.net.cell=bogus" not in overrides]
    assert len(good) == 3 and bad, sorted(jobs)
    for job in good:
        assert (job / "metrics.json").is_file(), f"job {job.name} has no metrics.json:\n{result.stderr[-3000:]}"
    for job in bad:
        assert not (job / "metrics.json").exists()
        assert "model.net.cell='bogus'" in (job / "error.txt").read_text()

    report = subprocess.run(
        [sys.executable, "scripts/compare.py", str(sweep_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert report.returncode == 0, report.stderr
    assert "failed" in report.stdout and "model.net.cell='bogus'" in report.stdout
    for name in ("comparison.csv", "comparison.md", "comparison.png"):
        assert (sweep_dir / name).stat().st_size > 0, name
    rows = list(csv.DictReader((sweep_dir / "comparison.csv").open()))
    finished = [r for r in rows if r["n_ok"] == "1"]
    assert sorted(r["config"] for r in finished) == sorted(VARIANTS)
    for row in finished:
        for column in ("val/loss_mean", "model/params_mean", "train/wall_time_s_mean", "train/best_epoch_mean"):
            assert float(row[column]) == float(row[column]), f"{column} is NaN in {row['config']}"
    assert len([r for r in rows if r["n_ok"] == "0"]) == len(bad)
    losses = [float(r["val/loss_mean"]) for r in finished]
    assert losses == sorted(losses), "rows are not ranked by val/loss (lower first)"
    markdown = (sweep_dir / "comparison.md").read_text()
    assert "Failed jobs" in markdown and markdown.count("model.net.cell='bogus'") == len(bad)


@pytest.mark.slow
def test_optuna_search_end_to_end(tmp_path: Path) -> None:
    """4 TPE trials: the SQLite study is in the sweep dir and its best value is that job's metrics.json entry."""
    optuna = pytest.importorskip("optuna")
    sweep_dir = tmp_path / "search"
    result = run_multirun("hparams_search=seeded_optuna", "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    study_file = sweep_dir / "optuna.db"
    assert study_file.is_file()

    study = optuna.load_study(study_name="seeded_search", storage=f"sqlite:///{study_file}")
    assert len(study.trials) == 4
    best = study.best_trial
    # the job whose overrides are the best trial's parameters
    jobs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    assert len(jobs) == 4
    wanted = {f"{k}={v}" for k, v in best.params.items()}
    matches = [job for job in jobs if wanted <= set(yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))]
    assert len(matches) == 1, f"no single job dir has the overrides {sorted(wanted)}"
    metrics = json.loads((matches[0] / "metrics.json").read_text())
    assert best.value == pytest.approx(metrics["val/skill"], rel=1e-9)
    assert yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())["best_value"] == pytest.approx(
        best.value
    )


def test_hparams_tab_gets_hyperparameters_and_final_metrics(make_cfg, tmp_path: Path) -> None:
    """The event files hold an hparams experiment whose metric keys are the final metrics of the run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from src.train import train

    metrics = train(make_cfg())
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == set(metrics)
    hparams = {h.name for h in experiment.hparam_infos}
    assert {"model/net/hidden_size", "model/optimizer/lr", "data/batch_size", "seed"} <= hparams
    assert not any(name.startswith(("paths/", "callbacks/", "logger/")) for name in hparams)
    for name, value in metrics.items():
        assert events.Scalars(name)[-1].value == pytest.approx(value, rel=1e-6), name
    # the final values go at the last step: the val/loss curve keeps its earlier points
    assert len(events.Scalars("val/loss")) >= 2


@pytest.mark.parametrize("name", config_options("hparams_search"))
def test_hparams_search_configs_compose_and_agree_on_direction(name: str) -> None:
    """Every search composes, uses seeded TPE, stores its study in the sweep dir, and its direction fits its metric."""
    cfg = compose_with_hydra(f"hparams_search={name}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed is not None
    assert sweeper.n_trials >= 1 and sweeper.params
    storage = OmegaConf.to_container(sweeper, resolve=False)["storage"]  # hydra.sweep.dir resolves only in a run
    assert storage.startswith("sqlite:///${hydra.sweep.dir}/"), (
        f"hydra.sweeper.storage={storage} is not a SQLite file in the sweep dir"
    )
    compare = load_compare()
    expected = "maximize" if compare.higher_is_better(cfg.optimized_metric) else "minimize"
    assert sweeper.direction == expected, (
        f"hydra.sweeper.direction={sweeper.direction} but optimized_metric={cfg.optimized_metric}"
    )
    missing = object()
    for key in sweeper.params:  # a searched key that is not in the config would fail every trial
        assert OmegaConf.select(cfg, key, default=missing) is not missing, (
            f"hydra.sweeper.params.{key} is not a config key"
        )


@pytest.mark.parametrize(
    "launcher,target",
    [
        ("submitit_slurm", "SlurmLauncher"),
        ("slurm", "SlurmLauncher"),
        ("joblib", "JoblibLauncher"),
        ("joblib_cpu", "JoblibLauncher"),
    ],
)
def test_launcher_configs_compose(launcher: str, target: str) -> None:
    """The cluster and parallel launchers compose (SLURM cannot run here, its config still must)."""
    cfg = compose_with_hydra(f"hydra/launcher={launcher}")
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "slurm":
        assert cfg.hydra.launcher.cpus_per_task >= 1 and cfg.hydra.launcher.timeout_min > 0
    if launcher == "joblib_cpu":
        assert cfg.hydra.launcher.n_jobs == 2


def test_compare_groups_seeds_and_lists_failures(tmp_path: Path) -> None:
    """compare.py on hand-made job dirs: mean +- std over seeds, ranking direction, failed jobs' error lines."""

    def job(
        num: int, overrides: list[str], metrics: dict | None, error: str | None = None, log: str | None = None
    ) -> None:
        job_dir = tmp_path / str(num)
        (job_dir / ".hydra").mkdir(parents=True)
        (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": "val/skill"}))
        if metrics is not None:
            (job_dir / "metrics.json").write_text(json.dumps(metrics))
        if error is not None:
            (job_dir / "error.txt").write_text(error + "\n")
        if log is not None:
            (job_dir / "train.log").write_text(log)

    base = {"model/params": 10.0, "train/wall_time_s": 1.0, "train/best_epoch": 3.0}
    job(0, ["model=a", "seed=0"], {**base, "val/skill": 0.5})
    job(1, ["model=a", "seed=1"], {**base, "val/skill": 0.7})
    job(2, ["model=b", "seed=0"], {**base, "val/skill": 0.9})
    job(3, ["model=b", "seed=1"], None, error="FloatingPointError: train/loss is nan at epoch 2")
    job(4, ["model=c", "seed=0"], None, log="[INFO] start\n[ERROR] - KeyError: 'val/nope'\n")
    job(10, ["model=c", "seed=1"], {**base, "val/skill": None})
    # metrics written, then the run failed: listed as failed, its numbers still shown
    job(
        5,
        ["model=d", "seed=0"],
        {**base, "val/skill": 0.1},
        error="KeyError: optimized_metric='val/nope' was not logged",
    )

    compare = load_compare()
    groups, failed = compare.compare(tmp_path, make_plot=False)
    assert [g.label for g in groups] == [
        "model=b",
        "model=a",
        "model=d",
        "model=c",
    ]  # skill: higher first, no value last
    assert groups[1].mean("val/skill") == pytest.approx(0.6) and groups[1].std("val/skill") == pytest.approx(
        0.1414, abs=1e-3
    )
    assert [job.path.name for job in failed] == ["3", "4", "5"]
    assert failed[0].error == "FloatingPointError: train/loss is nan at epoch 2"
    assert "KeyError: 'val/nope'" in failed[1].error
    assert (tmp_path / "comparison.md").read_text().count("\n- `") == 3
    rows = {r["config"]: r for r in csv.DictReader((tmp_path / "comparison.csv").open())}
    assert (rows["model=a"]["n_ok"], rows["model=b"]["n_ok"], rows["model=d"]["n_ok"]) == ("2", "1", "0")
    with pytest.raises(FileNotFoundError, match="no job dirs"):
        compare.compare(tmp_path / "3" / ".hydra", make_plot=False)


def test_compare_draws_a_metric_against_a_swept_key(tmp_path: Path) -> None:
    """--x/--panels: one line per model, one panel per seed index, mean over seeds; failed jobs left out."""

    def job(num: int, overrides: list[str], skill: float | None) -> None:
        job_dir = tmp_path / str(num)
        (job_dir / ".hydra").mkdir(parents=True)
        (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if skill is not None:
            (job_dir / "metrics.json").write_text(json.dumps({"test/skill": skill}))

    runs = [
        ("a", 5, 0, 1.0),
        ("a", 20, 0, 0.8),
        ("b", 5, 0, 0.9),
        ("b", 20, 0, None),
        ("a", 5, 3, 0.6),
        ("a", 20, 3, 0.4),
    ]
    for num, (model, length, index, skill) in enumerate(runs):
        job(num, [f"model={model}", f"data.continuation_length={length}", f"data.seed_index={index}", "seed=1"], skill)
    job(len(runs), ["model=a", "data.continuation_length=20", "data.seed_index=3", "seed=2"], 0.6)

    compare = load_compare()
    jobs = compare.load_jobs(tmp_path)
    assert compare.against(jobs, "test/skill", "data.continuation_length", "data.seed_index") == {
        "data.seed_index=0": {"model=a": {5.0: 1.0, 20.0: 0.8}, "model=b": {5.0: 0.9}},
        "data.seed_index=3": {"model=a": {5.0: 0.6, 20.0: pytest.approx(0.5)}},
    }
    image = compare.write_against(tmp_path, jobs, "test/skill", "data.continuation_length", "data.seed_index")
    assert image.is_file()
    assert image.with_suffix(".md").read_text().splitlines()[2:] == [
        "| 0 | model=a | 1 | 0.8 |",
        "| 0 | model=b | 0.9 | - |",
        "| 3 | model=a | 0.6 | 0.5 |",
    ]
