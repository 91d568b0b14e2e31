"""Re-test a checkpoint: ``python -m src.eval ckpt_path=<run>/checkpoints/best.ckpt``."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from src import runtime

log = logging.getLogger(__name__)


def run_config_of(ckpt_path: Path) -> Path:
    """``<run>/.hydra/config.yaml`` for ``<run>/checkpoints/<name>.ckpt``."""
    return ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test ``ckpt_path`` on the test split of its own data; write ``metrics.json``."""
    ckpt_path = Path(cfg.ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path} is not a file")
    run_config = run_config_of(ckpt_path)
    if cfg.use_run_config and run_config.is_file():
        trained = OmegaConf.load(run_config)
        with open_dict(cfg):
            cfg.data, cfg.model = trained.data, trained.model
        log.info("data and model configs taken from %s", run_config)
    elif cfg.use_run_config:
        log.warning("%s not found; using the data and model given on the command line", run_config)
    runtime.print_config_tree(cfg)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    loggers = runtime.instantiate_group(cfg.get("logger"), "logger")
    callbacks = runtime.instantiate_callbacks(cfg)
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    trainer.test(model, datamodule=datamodule, ckpt_path=str(ckpt_path))
    metrics = runtime.collect_metrics(trainer, ("test/",))
    if trainer.is_global_zero:
        runtime.write_metrics(metrics, cfg.paths.output_dir)
        runtime.report(metrics, cfg.paths.output_dir, title=f"eval of {ckpt_path}")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except Exception as error:
        runtime.fail(cfg.paths.output_dir, error)


if __name__ == "__main__":
    main()
