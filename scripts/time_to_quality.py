"""Wall time from a fresh process to a quality bar, for the lab's three kinds of task.

Each job runs ``python -m src.train <overrides>`` in a new process (imports, data generation, fit,
test and writing ``metrics.json`` all count), ``--repeats`` times; the table gives the median wall
seconds and the metric of each run.

    python scripts/time_to_quality.py [--repeats 3] [--jobs main seq2seq anomaly]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from src.reporting import markdown_table, mean_and_range

ROOT = Path(__file__).resolve().parents[1]
# name: (overrides, metric in metrics.json, bar it must reach)
JOBS = {
    "main": ([], "test/skill", 0.99),
    "seq2seq": (["model=seq2seq", "data=increment", "callbacks=seq2seq"], "test/exact_match", 0.99),
    "anomaly": (["model=encdec_ad", "data=anomaly"], "test/auroc", 0.95),
}


def run_once(overrides: list[str]) -> tuple[float, dict[str, float]]:
    """(wall seconds, metrics.json) of one fresh ``src.train`` process."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "src.train", *overrides, f"hydra.run.dir={out}"]
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        return wall, json.loads((Path(out) / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh runs per job; the median wall time is reported")
    parser.add_argument("--jobs", nargs="*", default=list(JOBS), choices=list(JOBS))
    args = parser.parse_args()
    rows = []
    for name in args.jobs:
        overrides, metric, bar = JOBS[name]
        runs = [run_once(overrides) for _ in range(args.repeats)]
        walls, values = [wall for wall, _ in runs], [metrics[metric] for _, metrics in runs]
        epochs = [metrics.get("train/epochs", float("nan")) for _, metrics in runs]
        rows.append(
            [
                "`" + " ".join(["python -m src.train", *overrides]) + "`",
                f"{metric} {mean_and_range(values, 4)} (>= {bar}: {'yes' if min(values) >= bar else 'NO'})",
                mean_and_range(epochs, 0),
                f"{statistics.median(walls):.1f} ({min(walls):.1f}..{max(walls):.1f})",
            ]
        )
        print(f"{name}: walls {[round(w, 1) for w in walls]}, {metric} {values}", file=sys.stderr, flush=True)
    header = ["command", "metric (mean, min..max)", "epochs", "wall s, median (min..max)"]
    print(markdown_table(header, rows))
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.repeats} fresh processes per job")


if __name__ == "__main__":
    main()
