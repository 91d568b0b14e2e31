"""Hidden-state saturation of every recurrent layer of a model, over a fixed validation batch.

The seq2seq post's symptom: encoder and decoder states pinned near +-1 by tanh, where the
gradient vanishes. This callback measures it for any recurrent model of the lab: it hooks every
recurrent layer the nets package finds in the LightningModule (``recurrent_layers``), runs one
forward pass on the first ``n_examples`` validation examples, and logs, per module, the fraction
of hidden values with ``|h| > limit`` (scalar ``saturation/<module>``) and the values themselves
(histogram ``saturation/<module>/h``, TensorBoard only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from typing_extensions import override

from src.data.batch import SeqBatch
from src.models.nets import recurrent_layers

log = logging.getLogger(__name__)


def saturation_fraction(hidden: torch.Tensor, limit: float = 0.99) -> float:
    """Fraction of entries of ``hidden`` with ``|h| > limit``."""
    if hidden.numel() == 0:
        return 0.0
    return float((hidden.detach().abs() > limit).float().mean())


def hidden_outputs(output: object) -> torch.Tensor:
    """The per-step hidden outputs of a recurrent module's return value ``(out, state)``, flattened.

    A PackedSequence holds only valid steps, so padding does not count for packed inputs.
    """
    out = output[0] if isinstance(output, tuple) else output
    if isinstance(out, PackedSequence):
        out = out.data
    return out.detach().float().reshape(-1)


def measure_saturation(
    pl_module: nn.Module, run: Callable[[], object], limit: float = 0.99
) -> dict[str, tuple[float, torch.Tensor]]:
    """Call ``run()`` with forward hooks on every recurrent module of ``pl_module``.

    Returns ``{name: (fraction with |h| > limit, all hidden values)}``; a module called several
    times (a decoder stepping one token at a time) contributes every call.
    """
    modules = recurrent_layers(pl_module)
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    handles = [
        module.register_forward_hook(lambda _m, _i, output, name=name: collected[name].append(hidden_outputs(output)))
        for name, module in modules.items()
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    result = {}
    for name, parts in collected.items():
        if parts:
            values = torch.cat(parts).cpu()
            result[name] = (saturation_fraction(values, limit), values)
    return result


class HiddenSaturation(pl.Callback):
    """Every ``every_n_epochs`` validation epochs, logs the hidden-state saturation of each recurrent layer.

    Scalars ``saturation/<module>`` go to every logger; histograms ``saturation/<module>/h`` to
    TensorBoard. The first time a fraction exceeds ``warn_above``, one console warning says so.
    """

    def __init__(
        self, every_n_epochs: int = 1, n_examples: int = 64, limit: float = 0.99, warn_above: float = 0.5
    ) -> None:
        if every_n_epochs < 1 or n_examples < 1:
            raise ValueError(
                f"callbacks.saturation.every_n_epochs={every_n_epochs} and n_examples={n_examples} must be >= 1"
            )
        if not 0.0 < limit < 1.0:
            raise ValueError(f"callbacks.saturation.limit={limit} must lie in (0, 1)")
        self.every_n_epochs, self.n_examples, self.limit, self.warn_above = (
            every_n_epochs,
            n_examples,
            limit,
            warn_above,
        )
        self.warned = False
        self.latest: dict[str, float] = {}

    def _batch(self, trainer: pl.Trainer, device: torch.device) -> SeqBatch:
        return trainer.datamodule.examples("val", self.n_examples).trimmed().to(device)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        batch = self._batch(trainer, pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            measured = measure_saturation(pl_module, lambda: pl_module(batch), self.limit)
        pl_module.train(was_training)
        self.latest = {name: fraction for name, (fraction, _) in measured.items()}
        for name, fraction in self.latest.items():
            pl_module.log(f"saturation/{name}", fraction, on_epoch=True, batch_size=batch.size)
        self._histograms(trainer, measured)
        self.check(self.latest, trainer.current_epoch)

    def check(self, fractions: dict[str, float], epoch: int) -> None:
        """Warn once, naming the module, when any fraction passes ``warn_above``."""
        over = {name: f for name, f in fractions.items() if f > self.warn_above}
        if over and not self.warned and rank_zero_only.rank == 0:
            log.warning(
                "hidden states saturate at epoch %d: %s of |h| > %s (threshold %s). Gradients through tanh "
                "vanish there; check the loss (normalised over the vocabulary?), lr and input scale.",
                epoch,
                ", ".join(f"{n} {f:.0%}" for n, f in over.items()),
                self.limit,
                self.warn_above,
            )
            self.warned = True

    @staticmethod
    def _histograms(trainer: pl.Trainer, measured: dict[str, tuple[float, torch.Tensor]]) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for name, (_, values) in measured.items():
                    logger.experiment.add_histogram(f"saturation/{name}/h", values, global_step=trainer.global_step)
