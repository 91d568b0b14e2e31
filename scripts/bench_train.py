"""Throughput of the lab's training path against a minimal hand-written PyTorch loop.

Both train the same net (RepeatVectorAutoencoder: hidden 100, relu LSTM) on the same seeded data
(1000 examples, 5 seeds, 5 steps, batch 32) in this one process. The lab runs the default
``src.train`` config (validation, checkpoints, TensorBoard logging, figures and progress bar on);
the bare loop trains and computes the validation MSE once per epoch, nothing else. Time is
the wall time of fit in both cases, so the ratio is what the framework costs.

    python scripts/bench_train.py [--epochs 100] [--repeats 1]

The last line is ``ratio: <lab throughput / bare-loop throughput>``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from src.data.seeded import SeededDataModule
from src.models.nets import RepeatVectorAutoencoder
from src.train import train

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def bare_loop(epochs: int, batch_size: int = 32, seed: int = 12345) -> float:
    """Seconds to train ``epochs`` epochs with a plain loop plus a validation MSE per epoch."""
    torch.manual_seed(seed)
    data = SeededDataModule(batch_size=batch_size)
    data.setup()
    train_split, val_split = data.splits["train"], data.splits["val"]
    net = RepeatVectorAutoencoder(n_features=1, target_length=5)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(train_split.size).split(batch_size):
            batch = train_split.index(idx)
            loss = torch.nn.functional.mse_loss(net(batch.src, batch.src_lengths, batch.tgt), batch.tgt)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            val_mse = torch.nn.functional.mse_loss(net(val_split.src, val_split.src_lengths, val_split.tgt), val_split.tgt)
    elapsed = time.perf_counter() - start
    print(f"bare loop: final val mse {val_mse.item():.2e}")
    return elapsed


def lab(epochs: int, batch_size: int = 32) -> float:
    """Seconds of ``trainer.fit`` through ``src.train`` with the default config."""
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "model=repeat_vector",
                "data=seeded",
                f"data.batch_size={batch_size}",
                f"trainer.max_epochs={epochs}",
                f"paths.output_dir={out}",
                f"paths.log_dir={out}",
                "test=false",
            ],
        )
        metrics = train(cfg)
    print(f"lab: final val mse {metrics['val/mse']:.2e}")
    return metrics["train/wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two paths; keep each one's best")
    args = parser.parse_args()
    bare_times, lab_times = [], []
    for _ in range(args.repeats):
        bare_times.append(bare_loop(args.epochs))
        lab_times.append(lab(args.epochs))
    bare, lab_s = min(bare_times), min(lab_times)
    print(f"bare loop: {1000 * bare / args.epochs:.1f} ms/epoch")
    print(f"lab:       {1000 * lab_s / args.epochs:.1f} ms/epoch")
    print(f"ratio: {bare / lab_s:.3f}")


if __name__ == "__main__":
    main()
