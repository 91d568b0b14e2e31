"""At the end of every fit, say in plain words what went wrong, if anything.

Each check looks for one failure people ask about, with its threshold in
``conf/callbacks/diagnosis.yaml``:

- ``predicts_mean``: real-valued runs whose ``val/skill`` stays near 0: no better than the
  per-position mean of the training targets (the "my RNN learns only the mean" symptom);
- ``ignores_input``: predictions that barely vary across validation examples whose targets do;
- ``cannot_fit``: a run that should memorise its training data (small ``data.n_train``,
  ``trainer.overfit_batches``, ``data.eval_on=train``) whose training loss stays far above 0
  (token runs: and that does not decode every training example exactly);
- ``saturated``: a recurrent layer whose hidden values sit at +-1 (the seq2seq post's symptom);
- ``overfitting``: ``val/loss`` rising again while ``train/loss`` keeps falling;
- ``decodes_worse``: token runs whose teacher-forced token accuracy is far above the exact match
  of what they decode on their own.

Every flag that applies goes to ``trainer.callback_metrics`` as ``diagnosis/<flag>`` (0.0 or 1.0;
``src.train`` writes them to ``metrics.json``); every statement to the console and to TensorBoard
as the text ``diagnosis``. Checks that do not apply to the task or data are left out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from typing_extensions import override

from src.callbacks.saturation import measure_saturation
from src.checks import check_number
from src.data.batch import SeqBatch
from src.masks import length_mask
from src.metrics.tokens import ExactMatch
from src.models.tasks.base import SeqBatchTask
from src.models.tasks.contract import SeqBatchData
from src.models.tasks.sequence_regression import SequenceRegressionTask
from src.models.tasks.token_seq2seq import TokenSeq2SeqTask, token_cross_entropy

log = logging.getLogger(__name__)

KEY = "callbacks.diagnosis"


@dataclass
class Finding:
    """One check's verdict: its flag name, whether it fired, and the sentence that says so."""

    flag: str
    fired: bool
    statement: str


@dataclass
class EpochLosses:
    epoch: int
    train: float
    val: float


class RunDiagnosis(pl.Callback):
    """Checks the finished fit for the failures listed in the module docstring and reports them."""

    def __init__(
        self,
        n_examples: int = 256,
        mean_skill_below: float = 0.1,
        input_spread_below: float = 0.1,
        small_n_train: int = 100,
        fit_loss_ratio_above: float = 0.05,
        fit_token_loss_above: float = 0.1,
        saturated_above: float = 0.5,
        saturation_limit: float = 0.99,
        overfit_rise_above: float = 0.25,
        overfit_min_epochs_since_best: int = 3,
        decode_gap_above: float = 0.3,
    ) -> None:
        check_number(f"{KEY}.n_examples", n_examples, 2)
        check_number(f"{KEY}.small_n_train", small_n_train, 0)
        check_number(f"{KEY}.saturation_limit", saturation_limit, 0.0, 1.0)
        check_number(f"{KEY}.overfit_min_epochs_since_best", overfit_min_epochs_since_best, 1)
        for key, value in (
            ("input_spread_below", input_spread_below),
            ("fit_loss_ratio_above", fit_loss_ratio_above),
            ("fit_token_loss_above", fit_token_loss_above),
            ("saturated_above", saturated_above),
            ("overfit_rise_above", overfit_rise_above),
            ("decode_gap_above", decode_gap_above),
        ):
            check_number(f"{KEY}.{key}", value, 0.0)
        self.n_examples, self.small_n_train = int(n_examples), int(small_n_train)
        self.mean_skill_below, self.input_spread_below = mean_skill_below, input_spread_below
        self.fit_loss_ratio_above, self.fit_token_loss_above = fit_loss_ratio_above, fit_token_loss_above
        self.saturated_above, self.saturation_limit = saturated_above, saturation_limit
        self.overfit_rise_above, self.overfit_min_epochs_since_best = (
            overfit_rise_above,
            int(overfit_min_epochs_since_best),
        )
        self.decode_gap_above = decode_gap_above
        self.history: list[EpochLosses] = []
        self.findings: list[Finding] = []
        self._resumed = False

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed fit keeps the epochs its checkpoint recorded (load_state_dict ran before this hook).
        if not self._resumed:
            self.history = []
        self._resumed, self.findings = False, []

    @override
    def state_dict(self) -> dict:
        return {"history": [(e.epoch, e.train, e.val) for e in self.history]}

    @override
    def load_state_dict(self, state_dict: dict) -> None:
        self.history = [EpochLosses(*row) for row in state_dict["history"]]
        self._resumed = True

    # Recorded at validation end, before the checkpoint callbacks (Lightning runs them last) save
    # this state: a run resumed from that checkpoint has the same history as one never stopped.
    # train/loss_epoch is not logged yet here, so the epoch's training loss is the task's running mean.
    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not isinstance(pl_module, SeqBatchTask):
            return
        train, val = pl_module.running_loss("train"), trainer.callback_metrics.get("val/loss")
        if train is None or val is None:
            return
        epoch = trainer.current_epoch
        self.history = [e for e in self.history if e.epoch != epoch] + [EpochLosses(epoch, train, float(val))]

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            self.findings = self.diagnose(trainer, pl_module)
        pl_module.train(was_training)
        for finding in self.findings:
            trainer.callback_metrics[f"diagnosis/{finding.flag}"] = torch.tensor(float(finding.fired))
        self._report(trainer)

    def diagnose(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[Finding]:
        """Every check that applies to this task and data, in the order of the module docstring."""
        data = trainer.datamodule
        findings: list[Finding] = []
        if isinstance(pl_module, (SequenceRegressionTask, TokenSeq2SeqTask)) and isinstance(data, SeqBatchData):
            val = self._examples(data, "val", pl_module.device, self.n_examples)
            if isinstance(pl_module, SequenceRegressionTask):
                findings += self._regression_checks(trainer, pl_module, val)
            else:
                findings += self._token_checks(pl_module, val)
            if self._should_overfit(trainer) is not None:
                findings.append(self._fit_check(trainer, pl_module, data))
            findings.append(self._saturation_check(pl_module, val))
        overfitting = self._overfitting_check()
        if overfitting is not None:
            findings.append(overfitting)
        return findings

    @staticmethod
    def _examples(data: SeqBatchData, split: str, device: torch.device, n: int) -> SeqBatch:
        return data.examples(split, n).trimmed().to(device)

    def _regression_checks(self, trainer: pl.Trainer, pl_module: pl.LightningModule, val: SeqBatch) -> list[Finding]:
        pred, tgt = pl_module(val).float(), val.tgt.float()
        mask = length_mask(val.tgt_lengths, tgt.shape[1]).unsqueeze(-1).float()
        target_spread = spread_across_examples(tgt, mask)
        if val.size < 2 or target_spread <= 1e-8:
            return []  # one example, or targets that do not vary: neither the mean nor the spread says anything
        findings = []
        skill = trainer.callback_metrics.get("val/skill")
        if skill is not None:
            skill = float(skill)
            findings.append(
                Finding(
                    "predicts_mean",
                    skill < self.mean_skill_below,
                    f"predicts the unconditional mean: val/skill {skill:.3f} < {self.mean_skill_below}; it does no "
                    "better than the per-position mean of the training targets, so it has not learned how the target "
                    "depends on the input (check what the loss compares, that inference feeds the net what training "
                    "did, the learning rate and the epochs)"
                    if skill < self.mean_skill_below
                    else f"learned more than the mean: val/skill {skill:.3f}",
                )
            )
        ratio = spread_across_examples(pred, mask) / target_spread
        findings.append(
            self._spread_finding(
                ratio, f"the predictions' spread across validation examples is {ratio:.1%} of the targets'"
            )
        )
        return findings

    def _token_checks(self, pl_module: TokenSeq2SeqTask, val: SeqBatch) -> list[Finding]:
        decoded = pl_module.decode(val)
        ratio = distinct_rows(decoded) / max(distinct_rows(val.tgt), 1)
        findings = [
            self._spread_finding(
                ratio, f"it decodes {ratio:.1%} as many distinct sequences as the validation targets hold"
            )
        ]
        logits = pl_module(val, 1.0)
        valid = val.tgt != pl_module.pad_id
        forced = float(((logits.argmax(dim=-1) == val.tgt) & valid).sum() / valid.sum().clamp(min=1))
        exact = ExactMatch(pl_module.pad_id).to(val.tgt.device)
        exact.update(decoded, val.tgt)
        exact_match = float(exact.compute())
        gap = forced - exact_match
        findings.append(
            Finding(
                "decodes_worse",
                gap > self.decode_gap_above,
                f"decodes worse than it is trained: teacher-forced token accuracy {forced:.3f} but decoded exact match "
                f"{exact_match:.3f} (gap {gap:.2f} > {self.decode_gap_above}); fed its own tokens it drifts off "
                "(check the decoder's stopping at eos, train with model.teacher_forcing < 1, or train longer)"
                if gap > self.decode_gap_above
                else f"decodes as it is trained: teacher-forced token accuracy {forced:.3f}, "
                f"decoded exact match {exact_match:.3f}",
            )
        )
        return findings

    def _spread_finding(self, ratio: float, measured: str) -> Finding:
        fired = ratio < self.input_spread_below
        return Finding(
            "ignores_input",
            fired,
            f"ignores its input: {measured} (< {self.input_spread_below:.0%}); it answers nearly the same "
            "whatever it is given"
            if fired
            else f"responds to its input: {measured}",
        )

    def _should_overfit(self, trainer: pl.Trainer) -> str | None:
        """Why this run should be able to memorise its training data, or None."""
        data = trainer.datamodule
        if trainer.overfit_batches:
            return f"trainer.overfit_batches={trainer.overfit_batches}"
        if data.evaluates_on_train:
            return "data.eval_on=train"
        n_train = data.split_size("train")
        if n_train <= self.small_n_train:
            return f"{n_train} training examples <= {KEY}.small_n_train={self.small_n_train}"
        return None

    @staticmethod
    def _fit_examples(trainer: pl.Trainer, data: SeqBatchData) -> int:
        """How many leading training examples the fit saw: the first batches when overfitting some."""
        batches, size = trainer.overfit_batches, data.split_size("train")
        if batches and batches >= 1:
            return data.examples_in_batches(int(batches))
        if batches:
            return max(1, int(batches * size))
        return size

    def _fit_check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, data: SeqBatchData) -> Finding:
        reason = self._should_overfit(trainer)
        n = min(self._fit_examples(trainer, data), self.n_examples)
        train = self._examples(data, "train", pl_module.device, n)
        if isinstance(pl_module, TokenSeq2SeqTask):
            loss = float(token_cross_entropy(pl_module(train, 1.0), train.tgt, pl_module.pad_id))
            exact = ExactMatch(pl_module.pad_id).to(train.tgt.device)
            exact.update(pl_module.decode(train), train.tgt)
            exact_match = float(exact.compute())
            # Early stopping at exact match 1.0 can leave the loss above the threshold: decoding every
            # training example right is fitting them.
            fired = loss > self.fit_token_loss_above and exact_match < 1.0
            measured = f"teacher-forced cross-entropy {loss:.3f} nats (decoded exact match {exact_match:.3f})"
            threshold = f"{self.fit_token_loss_above} nats"
            causes = (
                "the softmax normalises over the vocabulary (not over time), padding is excluded from the loss, "
                "model.optimizer.lr, trainer.max_epochs, model.net.dropout (slows memorising), model size"
            )
        else:
            pred, tgt = pl_module(train).float(), train.tgt.float()
            mask = length_mask(train.tgt_lengths, tgt.shape[1]).unsqueeze(-1).expand_as(tgt)
            variance = float(((tgt - tgt[mask].mean()) ** 2)[mask].mean().clamp(min=1e-12))
            ratio = float(((pred - tgt) ** 2)[mask].mean()) / variance
            fired, measured = ratio > self.fit_loss_ratio_above, f"MSE {ratio:.1%} of the targets' variance"
            threshold = f"{self.fit_loss_ratio_above:.0%}"
            causes = (
                "that the loss compares the prediction with the intended targets (not the inputs), that "
                "generation feeds the net what training did, model.optimizer.lr, trainer.max_epochs, model size"
            )
        return Finding(
            "cannot_fit",
            fired,
            f"cannot fit the training data: on its {n} training examples ({reason}: it should memorise them) its "
            f"{measured} stays above {threshold}. Check: {causes}"
            if fired
            else f"fits its {n} training examples ({reason}): {measured}",
        )

    def _saturation_check(self, pl_module: pl.LightningModule, val: SeqBatch) -> Finding:
        measured = measure_saturation(pl_module, lambda: pl_module(val), self.saturation_limit)
        fractions = {name: fraction for name, (fraction, _) in measured.items()}
        over = {name: f for name, f in fractions.items() if f > self.saturated_above}
        listed = ", ".join(f"{name} {f:.0%}" for name, f in (over or fractions).items()) or "no recurrent layer"
        return Finding(
            "saturated",
            bool(over),
            f"hidden units saturated: {listed} of |h| > {self.saturation_limit} (> {self.saturated_above:.0%}); "
            "gradients through tanh vanish there (check the loss's normalisation, model.optimizer.lr, the input scale)"
            if over
            else f"hidden units not saturated: {listed} of |h| > {self.saturation_limit}",
        )

    def _overfitting_check(self) -> Finding | None:
        if len(self.history) < 2:
            return None
        first, last = self.history[0], self.history[-1]
        best = min(self.history, key=lambda e: e.val)
        # How far val/loss came back up, against how far it had come down (or, if it never came
        # down, against its best): noise near a loss of 0 is not overfitting.
        scale = first.val - best.val if first.val > best.val else best.val
        rise = last.val - best.val
        fired = (
            rise > self.overfit_rise_above * scale
            and last.train < next(e.train for e in self.history if e.epoch == best.epoch)
            and last.epoch - best.epoch >= self.overfit_min_epochs_since_best
        )
        return Finding(
            "overfitting",
            fired,
            f"overfitting: val/loss rose from {best.val:.4g} at epoch {best.epoch} (the best epoch; "
            "checkpoints/best.ckpt "
            f"keeps it) to {last.val:.4g} at epoch {last.epoch} while train/loss fell to {last.train:.4g} (more data, "
            "dropout, weight decay or early stopping)"
            if fired
            else f"no overfitting: best val/loss {best.val:.4g} at epoch {best.epoch}, last {last.val:.4g}",
        )

    def _report(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        fired = [f for f in self.findings if f.fired]
        for finding in fired:
            log.warning("diagnosis: %s", finding.statement)
        if not fired:
            log.info("diagnosis: no problem found (%s)", ", ".join(f.flag for f in self.findings) or "no check applied")
        text = "\n".join(f"- **{'PROBLEM' if f.fired else 'ok'}** `{f.flag}`: {f.statement}" for f in self.findings)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("diagnosis", text or "no check applied", global_step=trainer.global_step)


def spread_across_examples(values: torch.Tensor, mask: torch.Tensor) -> float:
    """Standard deviation across examples (dim 0) at each valid position, averaged over positions."""
    weight = mask.expand_as(values)
    count = weight.sum(dim=0).clamp(min=1)
    mean = (values * weight).sum(dim=0) / count
    variance = (((values - mean) ** 2) * weight).sum(dim=0) / count
    return float(variance.sqrt().mean())


def distinct_rows(tokens: torch.Tensor) -> int:
    return int(torch.unique(tokens, dim=0).shape[0])
