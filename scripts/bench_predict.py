"""Throughput and peak memory of ``src.predict`` on generated 4-channel CSVs of growing length.

    python scripts/bench_predict.py --ckpt <run>/checkpoints/best.ckpt --rows 100000 1000000

The checkpoint must come from ``data=anomaly`` at its default 4 sensors (columns ``sensor_0..3``). Each
size runs ``python -m src.predict`` in a fresh process at the checkpoint's window and stride; the table
gives wall seconds (process start to exit), points per second and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.data.anomaly import SensorSystem

ROOT = Path(__file__).resolve().parents[1]
# Runs src.predict as __main__ and reports the process's own peak RSS (KiB on Linux) when it exits.
WRAPPER = (
    "import atexit, resource, runpy, sys; "
    "atexit.register(lambda: print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
    "file=sys.stderr)); "
    "sys.argv = ['src.predict', *sys.argv[1:]]; runpy.run_module('src.predict', run_name='__main__')"
)


def write_series(path: Path, rows: int) -> None:
    generator = torch.Generator().manual_seed(0)
    system = SensorSystem(4, 3, 0.05, generator)
    series = system.series(0, rows, max(1, rows // 2000), generator, "bench")
    frame = pd.DataFrame(series.values.numpy(), columns=[f"sensor_{i}" for i in range(4)])
    frame.insert(0, "timestamp", np.arange(rows))
    frame["is_anomaly"] = series.labels.numpy().astype(int)
    frame.to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    print("| rows | wall (s) | points/s | peak RSS (MB) |")
    print("| --- | --- | --- | --- |")
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            source = Path(tmp) / f"series_{rows}.csv"
            write_series(source, rows)
            start = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    WRAPPER,
                    f"ckpt_path={args.ckpt}",
                    f"input={source}",
                    f"hydra.run.dir={tmp}/predict_{rows}",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(done.stderr[-2000:])
            peak = int(done.stderr.rsplit("peak_rss_kib", 1)[1].split()[0]) / 1024
            peaks.append(peak)
            print(f"| {rows:,} | {wall:.1f} | {rows / wall:,.0f} | {peak:.0f} |")
    print(f"peak RSS growth, largest over smallest: {peaks[-1] - peaks[0]:.0f} MB")


if __name__ == "__main__":
    main()
