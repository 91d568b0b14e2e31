"""Rank the jobs of a multirun: ``python scripts/compare.py outputs/train/multiruns/<date>_<time>``.

Reads every job's ``.hydra/overrides.yaml`` and ``metrics.json``, groups jobs whose overrides are equal
except for ``seed`` (mean +- std over the seeds), prints a ranked table, and writes ``comparison.csv``,
``comparison.md`` and ``comparison.png`` into the multirun dir. Jobs without ``metrics.json`` are listed
as failed with their error line (from ``error.txt``, else the job's log).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rich
import rich.console
import rich.table
import yaml

from src.reporting import higher_is_better, markdown_table

# Overrides that only repeat a configuration; jobs that differ only in these form one group.
SEED_KEYS = ("seed",)
# Columns every table shows besides the ranked metric (the metrics.json contract, docs/design.md).
EXTRA_COLUMNS = {"model/params": "params", "train/wall_time_s": "train time (s)", "train/best_epoch": "best epoch"}
# How each extra column is printed; metrics get 4 significant digits.
COLUMN_FORMATS = {"model/params": ",.0f", "train/wall_time_s": ".1f", "train/best_epoch": ".1f"}
ERROR_LINE = re.compile(r"(Error|Exception)\b")


@dataclass
class Job:
    """One job dir of a multirun."""

    path: Path
    overrides: list[str]
    metrics: dict[str, float] | None
    error: str = ""
    optimized_metric: str | None = None

    @property
    def failed(self) -> bool:
        """No ``metrics.json``, or an ``error.txt`` (e.g. the optimized_metric was missing after training)."""
        return self.metrics is None or bool(self.error)


@dataclass
class Group:
    """Jobs with the same overrides except the seed."""

    label: str
    jobs: list[Job] = field(default_factory=list)

    def values(self, metric: str) -> np.ndarray:
        """The metric over this group's jobs; a missing or null value is NaN."""
        found = [(job.metrics or {}).get(metric) for job in self.jobs]
        return np.array([math.nan if v is None else float(v) for v in found], dtype=float)

    def mean(self, metric: str) -> float:
        values = self.values(metric)
        return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan

    def std(self, metric: str) -> float:
        """Sample standard deviation over seeds; NaN for a single job."""
        values = self.values(metric)
        values = values[np.isfinite(values)]
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def override_key(override: str) -> str:
    """``+model.x=3`` -> ``model.x``."""
    return override.split("=", 1)[0].lstrip("~+")


def error_line(job_dir: Path) -> str:
    """The one-line error a failed job left: ``error.txt``, else the last error line of its log."""
    error_file = job_dir / "error.txt"
    if error_file.is_file():
        return error_file.read_text().strip().splitlines()[0] if error_file.read_text().strip() else "empty error.txt"
    for log_file in sorted(job_dir.glob("*.log")):
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if ERROR_LINE.search(line)]
        if lines:
            return lines[-1].strip()
    return "no metrics.json and no error line (still running, or killed?)"


def load_jobs(sweep_dir: Path) -> list[Job]:
    """Every job under ``sweep_dir`` (any dir holding ``.hydra/overrides.yaml``), in job-number order."""
    jobs = []
    for overrides_file in sweep_dir.glob("**/.hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        overrides = [str(o) for o in (yaml.safe_load(overrides_file.read_text()) or [])]
        config_file = job_dir / ".hydra" / "config.yaml"
        config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
        jobs.append(
            Job(
                path=job_dir,
                overrides=overrides,
                metrics=metrics,
                error=error_line(job_dir) if metrics is None or (job_dir / "error.txt").is_file() else "",
                optimized_metric=(config or {}).get("optimized_metric"),
            )
        )
    # numeric job dirs (0, 1, ..., 10) in numeric order, anything else after them by name
    return sorted(jobs, key=lambda j: (0, int(j.path.name), "") if j.path.name.isdigit() else (1, 0, str(j.path)))


def group_jobs(jobs: list[Job]) -> tuple[list[Group], list[str]]:
    """Groups of jobs equal up to the seed, labelled by the overrides that vary; plus the common ones."""
    keyed = [[o for o in job.overrides if override_key(o) not in SEED_KEYS] for job in jobs]
    common = [o for o in (keyed[0] if keyed else []) if all(o in k for k in keyed)]
    groups: dict[str, Group] = {}
    for job, overrides in zip(jobs, keyed):
        label = " ".join(short(o) for o in overrides if o not in common) or "(same overrides)"
        groups.setdefault(label, Group(label)).jobs.append(job)
    return list(groups.values()), common


def rank(groups: list[Group], metric: str) -> list[Group]:
    """Best first by the mean of ``metric``; groups without a value last."""
    sign = -1.0 if higher_is_better(metric) else 1.0

    def key(group: Group) -> tuple[bool, float]:
        mean = group.mean(metric)
        return (not math.isfinite(mean), sign * mean if math.isfinite(mean) else 0.0)

    return sorted(groups, key=key)


def fmt(mean: float, std: float, spec: str = ".4g") -> str:
    """``mean ± std`` (std only when there are several seeds)."""
    if not math.isfinite(mean):
        return "-"
    text = f"{mean:{spec}}"
    return f"{text} ± {std:.2g}" if math.isfinite(std) else text


def short(override: str) -> str:
    """``model.optimizer.lr=0.004105051027697199`` -> ``model.optimizer.lr=0.004105``: labels stay readable."""
    key, _, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    return override if value.lstrip("-").isdigit() else f"{key}={number:.4g}"


def table_rows(groups: list[Group], columns: list[str]) -> list[list[str]]:
    """Display rows: rank, config, jobs ok/total, then mean +- std of each column."""
    rows = []
    for i, group in enumerate(groups, start=1):
        ok = sum(not job.failed for job in group.jobs)
        cells = [fmt(group.mean(c), group.std(c), COLUMN_FORMATS.get(c, ".4g")) for c in columns]
        rows.append([str(i), group.label, f"{ok}/{len(group.jobs)}", *cells])
    return rows


def write_csv(path: Path, groups: list[Group], metric_names: list[str]) -> None:
    """One row per group: mean and std of every metric, and the job dirs."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["rank", "config", "n_ok", "n_jobs", *[f"{m}_{s}" for m in metric_names for s in ("mean", "std")], "jobs"]
        )
        for i, group in enumerate(groups, start=1):
            ok = sum(not job.failed for job in group.jobs)
            stats = [v for m in metric_names for v in (group.mean(m), group.std(m))]
            writer.writerow([i, group.label, ok, len(group.jobs), *stats, " ".join(j.path.name for j in group.jobs)])


def write_markdown(path: Path, header: list[str], rows: list[list[str]], common: list[str], failed: list[Job]) -> None:
    """The ranked table as GitHub markdown, the shared overrides, and the failed jobs."""
    lines = [markdown_table(header, [[cell.replace("|", "\\|") for cell in row] for row in rows])]
    if common:
        lines += ["", "Common overrides: `" + " ".join(common) + "`"]
    if failed:
        lines += ["", "Failed jobs:", ""] + [
            f"- `{job.path.name}` ({' '.join(job.overrides)}): {job.error}" for job in failed
        ]
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, groups: list[Group], metric: str) -> None:
    """Horizontal bars of the metric's mean per group, std over seeds as error bars, best on top."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on CI or clusters
    import matplotlib.pyplot as plt

    labels = [textwrap.fill(g.label, 48) for g in groups][::-1]
    means = [g.mean(metric) for g in groups][::-1]
    stds = [g.std(metric) for g in groups][::-1]
    height = 1.2 + sum(0.2 + 0.18 * label.count("\n") for label in labels) + 0.2 * len(labels)
    fig, ax = plt.subplots(figsize=(10, height))
    ax.barh(labels, np.nan_to_num(means), xerr=np.nan_to_num(stds), capsize=3, color="tab:blue")
    ax.set_xlabel(f"{metric} ({'higher' if higher_is_better(metric) else 'lower'} is better)")
    ax.set_title("comparison")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def override_value(job: Job, key: str) -> str | None:
    """The value ``job`` gave ``key`` on its command line, or None."""
    return next((o.split("=", 1)[1] for o in job.overrides if override_key(o) == key), None)


def against(jobs: list[Job], metric: str, x: str, panels: str | None) -> dict[str, dict[str, dict[float, float]]]:
    """panel value -> line label (the other varying overrides) -> x value -> mean of ``metric`` over seeds."""
    fixed = {x, panels, *SEED_KEYS}
    keyed = [[o for o in job.overrides if override_key(o) not in fixed] for job in jobs]
    common = [o for o in (keyed[0] if keyed else []) if all(o in k for k in keyed)]
    values: dict[str, dict[str, dict[float, list[float]]]] = {}
    for job, overrides in zip(jobs, keyed):
        at, value = override_value(job, x), (job.metrics or {}).get(metric)
        if at is None or value is None or job.failed:
            continue
        label = " ".join(short(o) for o in overrides if o not in common) or "(same overrides)"
        panel = f"{panels}={override_value(job, panels)}" if panels else metric
        values.setdefault(panel, {}).setdefault(label, {}).setdefault(float(at), []).append(float(value))
    return {
        p: {label: {k: float(np.mean(v)) for k, v in sorted(xs.items())} for label, xs in lines.items()}
        for p, lines in sorted(values.items())
    }


def write_against(sweep_dir: Path, jobs: list[Job], metric: str, x: str, panels: str | None) -> Path:
    """``<metric> against <x>``: one line per configuration, one panel per value of ``panels``; a
    markdown table beside it (rows: panel and configuration, columns: the values of ``x``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = against(jobs, metric, x, panels)
    if not data:
        raise ValueError(f"no finished job sets {x} and reports {metric}")
    xs = sorted({at for lines in data.values() for line in lines.values() for at in line})
    fig, axes = plt.subplots(1, len(data), figsize=(4.5 * len(data) + 2.5, 4), sharey=True, squeeze=False)
    for ax, (panel, lines) in zip(axes[0], data.items()):
        for label, line in lines.items():
            ax.plot(list(line), list(line.values()), marker="o", label=label)
        ax.set_title(panel)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    fig.tight_layout()
    stem = f"{metric}_against_{x}".replace("/", "_")
    fig.savefig(sweep_dir / f"{stem}.png", dpi=120)
    plt.close(fig)
    header = ([panels] if panels else []) + ["config", *[f"{x}={at:g}" for at in xs]]
    rows = [
        ([panel.split("=", 1)[1]] if panels else []) + [label, *(f"{line[at]:.4g}" if at in line else "-" for at in xs)]
        for panel, lines in data.items()
        for label, line in lines.items()
    ]
    (sweep_dir / f"{stem}.md").write_text(markdown_table(header, rows) + "\n")
    return sweep_dir / f"{stem}.png"


def compare(sweep_dir: Path, metric: str | None = None, make_plot: bool = True) -> tuple[list[Group], list[Job]]:
    """Build and write the comparison of ``sweep_dir``; returns the ranked groups and the failed jobs."""
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"multirun dir {sweep_dir} does not exist")
    jobs = load_jobs(sweep_dir)
    if not jobs:
        raise FileNotFoundError(f"no job dirs (*/.hydra/overrides.yaml) under {sweep_dir}; is it a multirun dir?")
    metric = metric or next((j.optimized_metric for j in jobs if j.optimized_metric), None) or "val/loss"
    groups, common = group_jobs(jobs)
    groups = rank(groups, metric)
    failed = [job for job in jobs if job.failed]

    columns = [metric]
    test_twin = "test/" + metric.split("/", 1)[1] if metric.startswith("val/") else None
    if test_twin and any(test_twin in (j.metrics or {}) for j in jobs):
        columns.append(test_twin)
    columns += [c for c in EXTRA_COLUMNS if c not in columns]
    header = ["rank", "config", "ok", *[EXTRA_COLUMNS.get(c, c) for c in columns]]
    rows = table_rows(groups, columns)

    metric_names = sorted({name for job in jobs for name in (job.metrics or {})})
    write_csv(sweep_dir / "comparison.csv", groups, metric_names)
    write_markdown(sweep_dir / "comparison.md", header, rows, common, failed)
    if make_plot:
        plot(sweep_dir / "comparison.png", groups, metric)

    table = rich.table.Table(title=f"{sweep_dir}: ranked by {metric} ({'max' if higher_is_better(metric) else 'min'})")
    for name in header:
        table.add_column(name, justify="left" if name == "config" else "right")
    for row in rows:
        table.add_row(*row)
    console = rich.console.Console()
    if not console.is_terminal:  # logs and CI: do not squeeze the table into 80 columns
        console = rich.console.Console(width=200)
    console.print(table)
    if common:
        console.print(f"[dim]common overrides: {' '.join(common)}[/dim]")
    for job in failed:
        console.print(f"[bold red]failed[/bold red] {job.path}: {job.error}")
    console.print(f"wrote comparison.csv, comparison.md{', comparison.png' if make_plot else ''} into {sweep_dir}")
    return groups, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir: outputs/<task>/multiruns/<date>_<time>")
    parser.add_argument("--metric", default=None, help="metric to rank by (default: the jobs' optimized_metric)")
    parser.add_argument("--no-plot", action="store_true", help="skip comparison.png")
    parser.add_argument(
        "--x", default=None, help="also plot the metric against this swept key (e.g. data.continuation_length)"
    )
    parser.add_argument("--panels", default=None, help="with --x: one panel per value of this swept key")
    args = parser.parse_args()
    compare(args.sweep_dir, args.metric, make_plot=not args.no_plot)
    if args.x:
        metric = args.metric or "val/loss"
        written = write_against(args.sweep_dir, load_jobs(args.sweep_dir), metric, args.x, args.panels)
        rich.print(f"wrote {written.name} and {written.with_suffix('.md').name} into {args.sweep_dir}")


if __name__ == "__main__":
    main()
