"""Attention heat-maps of a few fixed validation examples, decoded greedily."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from src.callbacks.snapshot import ValidationSnapshot  # noqa: E402
from src.data.batch import SeqBatch  # noqa: E402
from src.models.tasks.token_seq2seq import TokenSeq2SeqTask  # noqa: E402


class AttentionFigure(ValidationSnapshot):
    """Every ``every_n_epochs`` epochs, logs ``val/attention``: for ``n_examples`` fixed validation
    examples, the decoder's attention over source tokens (rows: predicted tokens, columns: source).

    A good ``reverse`` model shows the anti-diagonal, ``copy`` and ``increment`` the diagonal.
    Nets without attention (``model.net.attention=none``) are skipped with one log line.
    """

    config_key = "callbacks.attention_figure"

    def __init__(self, every_n_epochs: int = 5, n_examples: int = 4, tag: str = "val/attention") -> None:
        super().__init__(every_n_epochs, n_examples, tag)

    def skip_reason(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch) -> str | None:
        if not isinstance(pl_module, TokenSeq2SeqTask):
            return "needs a token task (model=seq2seq and its variants)"
        if not pl_module.net.has_attention:
            return "the net has no attention (model.net.attention=none)"
        return None

    def snapshot(self, writer, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: SeqBatch) -> None:
        decoded = pl_module.net.decode(batch.src, batch.src_lengths, batch.tgt.shape[1])
        batch = batch.to("cpu")
        figure = draw_attention(
            batch.src, batch.src_lengths, decoded.tokens.cpu(), decoded.attention.cpu(), pl_module.net.eos_id
        )
        writer.add_figure(self.tag, figure, global_step=trainer.global_step)
        plt.close(figure)


def draw_attention(
    src: torch.Tensor, src_lengths: torch.Tensor, tokens: torch.Tensor, attention: torch.Tensor, eos: int
) -> plt.Figure:
    """One heat-map per example, trimmed to the source length and the decoded length (eos included)."""
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
