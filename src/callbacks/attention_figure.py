"""Attention heat-maps of a few fixed validation examples, decoded greedily."""
from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from pytorch_lightning.loggers import TensorBoardLogger  # noqa: E402
from pytorch_lightning.utilities import rank_zero_only  # noqa: E402

log = logging.getLogger(__name__)


class AttentionFigure(pl.Callback):
    """Every ``every_n_epochs`` epochs, logs ``val/attention``: for ``n_examples`` fixed validation
    examples, the decoder's attention over source tokens (rows: predicted tokens, columns: source).

    A good ``reverse`` model shows the anti-diagonal, ``copy`` and ``increment`` the diagonal.
    Nets without attention (``model.net.attention=none``) are skipped with one log line.
    """

    def __init__(self, every_n_epochs: int = 5, n_examples: int = 4, tag: str = "val/attention") -> None:
        if every_n_epochs < 1 or n_examples < 1:
            raise ValueError(
                f"callbacks.attention_figure.every_n_epochs={every_n_epochs} and n_examples={n_examples} must be >= 1"
            )
        self.every_n_epochs, self.n_examples, self.tag = every_n_epochs, n_examples, tag
        self._skipped = False

    def _skip(self, why: str) -> None:
        if not self._skipped:
            log.info("AttentionFigure skipped: %s", why)
            self._skipped = True

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if trainer.sanity_checking or epoch % self.every_n_epochs:
            return
        net = getattr(pl_module, "net", None)
        if net is None or not getattr(net, "has_attention", False):
            return self._skip("the net has no attention (model.net.attention=none or not a seq2seq net)")
        writer = next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if writer is None:
            return self._skip("no TensorBoard logger is configured")
        datamodule = trainer.datamodule
        batch = datamodule.splits["val"].index(slice(0, self.n_examples))
        was_training = pl_module.training
        pl_module.eval()
        decoded = net.decode(
            batch.src.to(pl_module.device), batch.src_lengths.to(pl_module.device), batch.tgt.shape[1]
        )
        pl_module.train(was_training)
        figure = draw_attention(batch.src, batch.src_lengths, decoded.tokens.cpu(), decoded.attention.cpu(), datamodule)
        writer.add_figure(self.tag, figure, global_step=trainer.global_step)
        plt.close(figure)


def draw_attention(
    src: torch.Tensor, src_lengths: torch.Tensor, tokens: torch.Tensor, attention: torch.Tensor, datamodule
) -> plt.Figure:
    """One heat-map per example, trimmed to the source length and the decoded length (eos included)."""
    eos = getattr(datamodule, "eos_id", 2)
    n = src.shape[0]
    cols = min(n, 2)
    rows = -(-n // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4.5 * rows), dpi=72, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        s_len = int(src_lengths[k])
        row = tokens[k].tolist()
        p_len = row.index(eos) + 1 if eos in row else len(row)
        ax.imshow(attention[k, :p_len, :s_len].numpy(), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_xticks(range(s_len), [str(t) for t in src[k, :s_len].tolist()], rotation=90, fontsize=7)
        ax.set_yticks(range(p_len), ["</s>" if t == eos else str(t) for t in row[:p_len]], fontsize=7)
        ax.set_xlabel("source")
        ax.set_ylabel("prediction")
        ax.set_title(f"validation example {k}", fontsize="small")
    figure.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.95, wspace=0.3, hspace=0.4)
    return figure
