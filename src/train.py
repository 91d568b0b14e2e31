"""Train one model on one dataset: ``python -m src.train model=<model> data=<data>``."""

from __future__ import annotations

import logging

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint, Timer

from src import preflight, runtime

log = logging.getLogger(__name__)


def fit_summary(trainer: pl.Trainer, callbacks: list) -> dict[str, float]:
    """Epochs run and, when a Timer callback is configured, the wall time of fit."""
    summary = {"train/epochs": float(trainer.current_epoch)}
    timer = next((c for c in callbacks if isinstance(c, Timer)), None)
    if timer is not None:
        summary["train/wall_time_s"] = float(timer.time_elapsed("train"))
    return summary


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (resuming from ``ckpt_path`` if set), test the best checkpoint, write ``metrics.json``."""
    output_dir = cfg.paths.output_dir
    resumed = preflight.check_config(cfg)
    runtime.print_config_tree(cfg)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    preflight.check_targets(cfg, datamodule)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    model.lab_config = runtime.portable_config(cfg)
    if resumed is not None:
        preflight.check_checkpoint_fits(resumed, model, cfg.ckpt_path)
    callbacks = runtime.instantiate_callbacks(cfg)
    loggers = runtime.instantiate_group(cfg.get("logger"), "logger")
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    params = runtime.hparams_of(cfg)
    for logger in loggers:
        logger.log_hyperparams(params)
    # Parallel sweep jobs share the machine's cores; this line shows how many each job got.
    log.info("torch threads: %d", torch.get_num_threads())

    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    best = ""
    metrics: dict[str, float] = {"model/params": float(sum(p.numel() for p in model.parameters()))}
    if cfg.get("train"):
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        except Exception as error:
            if runtime.is_failure_in_training(error):  # a NaN or a crash: metrics.json says so
                failed = {
                    **metrics,
                    **fit_summary(trainer, callbacks),
                    "train/failed_at_step": float(trainer.global_step),
                }
                runtime.write_metrics(failed, output_dir, error=runtime.error_line(error))
            raise
        metrics.update(runtime.collect_metrics(trainer, ("diagnosis/",)))
        metrics.update(fit_summary(trainer, callbacks))
        last_epoch = runtime.collect_metrics(trainer, ("val/",))
        if not last_epoch and trainer.limit_val_batches and not trainer.interrupted:
            # trainer.max_steps or max_time ended the fit before its first validation (a short smoke
            # run): its final weights are validated, so that it reports val/* like any other run.
            log.info("the fit ended before its first validation; validating its final weights")
            trainer.validate(model, datamodule=datamodule, verbose=False)
            last_epoch = runtime.collect_metrics(trainer, ("val/",))
        best = checkpoint.best_model_path if checkpoint is not None else ""
        metrics.update(last_epoch)
        if best:
            # Test scores the best checkpoint: val/* are its own; the final epoch's are last_epoch/val/*.
            saved = torch.load(best, map_location="cpu", weights_only=True)
            metrics["train/best_epoch"] = float(saved["epoch"])
            metrics.update(saved.get("val_metrics", {}))
            metrics.update({f"last_epoch/{name}": value for name, value in last_epoch.items()})
    if cfg.get("test"):
        if not best:
            log.warning("no best checkpoint was saved; testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or cfg.get("ckpt_path"))
        metrics.update(runtime.collect_metrics(trainer, ("test/",)))

    if trainer.is_global_zero:
        runtime.write_metrics(metrics, output_dir)
        runtime.log_hparams_with_metrics(loggers, params, metrics, step=trainer.global_step)
        runtime.report(metrics, output_dir, title=f"{cfg.task_name}: final metrics")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
        return runtime.metric_value(metrics, cfg.get("optimized_metric"))
    except Exception as error:
        runtime.fail(cfg.paths.output_dir, error)


if __name__ == "__main__":
    main()
