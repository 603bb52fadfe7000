"""Sweep summaries: one row per job of a Hydra multirun, written as summary.csv and summary.md.

Every job directory holds `.hydra/overrides.yaml` and `.hydra/config.yaml` (written by Hydra) and
`metrics.json` (written by `speechcls.train`, for a failed job too). When the sweep varies `seed` or
`data.fold`, the jobs that differ only in those are also summarised together (`seed_statistics`): mean and sample
standard deviation (ddof 1) of every metric, in summary_by_recipe.csv, a second table of summary.md and
summary_by_recipe.png. The `SweepSummary` Hydra callback (conf/hydra/default.yaml) writes and prints
all of it when a multirun ends, and joins the k-fold jobs' out-of-fold predictions into one
oof_predictions.csv with their accuracy. It can be rebuilt later:

    python -m speechcls.summarize outputs/train/multiruns/2025-01-01_12-00-00
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from matplotlib.figure import Figure
from omegaconf import DictConfig

from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN
from speechcls.run_record import METRICS_FILE, OOF_FILE, read_record

HYDRA_DIR = ".hydra"
SEED = "seed"
# Overrides whose jobs repeat one recipe: their mean and spread are the recipe's.
REPLICATES = (SEED, "data.fold")
EPOCH_TIME = "time/epoch_s"  # the last training epoch's, logged by speechcls.callbacks.Throughput


def job_dirs(sweep_dir: str | Path) -> list[Path]:
    """The sweep's job directories (those Hydra wrote overrides into), in job-number order."""
    jobs = [path.parent.parent for path in Path(sweep_dir).glob(f"*/{HYDRA_DIR}/overrides.yaml")]
    return sorted(jobs, key=lambda job: (not job.name.isdigit(), int(job.name) if job.name.isdigit() else 0, job.name))


def read_job(job_dir: Path) -> dict[str, Any]:
    """A job's overrides, optimized metric and metrics.json (status `unfinished` when there is none)."""
    overrides = yaml.safe_load((job_dir / HYDRA_DIR / "overrides.yaml").read_text()) or []
    config = yaml.safe_load((job_dir / HYDRA_DIR / "config.yaml").read_text())
    record = read_record(job_dir)
    return {
        "job": job_dir.name,
        "overrides": dict(override.partition("=")[::2] for override in overrides),
        "optimized_metric": config["optimized_metric"],
        "status": record.get("status", "ok" if record else "unfinished"),
        "metrics": record.get("metrics", {}),
        "epochs": record.get("epochs"),
        "wall_time_s": record.get("wall_time_s"),
        "checkpoint": record.get("best_checkpoint") or None,
        "error": record.get("error", "" if record else f"no {METRICS_FILE}: killed, or still running"),
    }


class Summary(NamedTuple):
    table: pd.DataFrame  # one row per job, best first; failed and unfinished jobs last
    sorted_by: str  # the column of the optimized metric
    shared: dict[str, str]  # the overrides all jobs have in common (left out of the table)
    varied: list[str]  # the override columns: the overrides that differ between jobs


def summarize(sweep_dir: str | Path, mode: str = "max") -> Summary:
    """One row per job of the sweep, sorted by the optimized metric in direction `mode`.

    Columns: job, the overrides that differ between jobs, the best validation value of the optimized
    metric, its test counterpart and that metric's breakdowns (e.g. test/acc/<engine> of the two-engine
    set), epochs, the last epoch's time, wall time, checkpoint, status and error.
    """
    jobs = [read_job(job) for job in job_dirs(sweep_dir)]
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: no job directories (*/{HYDRA_DIR}/overrides.yaml)")
    overrides = pd.DataFrame([job["overrides"] for job in jobs], dtype=object)
    constant = overrides.columns[overrides.nunique(dropna=False) == 1]
    shared = {key: overrides[key][0] for key in constant} if len(jobs) > 1 else {}
    metric = jobs[0]["optimized_metric"]
    best, test = f"best {metric}", metric.replace("val/", "test/", 1)
    rows = [
        {
            "job": job["job"],
            **{key: value for key, value in job["overrides"].items() if key not in shared},
            # The checkpoint callback's best value; the last epoch's when it did not record one.
            best: job["metrics"].get(f"best/{metric}", job["metrics"].get(metric)),
            test: job["metrics"].get(test),
            **{name: value for name, value in job["metrics"].items() if name.startswith(f"{test}/")},
            "epochs": job["epochs"],
            EPOCH_TIME: job["metrics"].get(EPOCH_TIME),
            "wall_time_s": job["wall_time_s"],
            "checkpoint": job["checkpoint"],
            "status": job["status"],
            "error": " ".join(str(job["error"]).split()),
        }
        for job in jobs
    ]
    table = pd.DataFrame(rows).astype({"epochs": "Int64"})
    table = table.sort_values(best, ascending=mode == "min", na_position="last", kind="stable")
    varied = [key for key in overrides.columns if key not in shared]
    return Summary(table.reset_index(drop=True), best, shared, varied)


def seed_statistics(summary: Summary) -> pd.DataFrame:
    """Mean and standard deviation over replicates of every metric, one row per group of jobs whose
    overrides differ only in `seed` or `data.fold` (a recipe on a data set, in the recipe study).

    The standard deviation is the sample one (ddof 1, as `statistics.stdev`): NaN for a single job.
    Only finished jobs count: `finished` is their number, `jobs` that of the group's jobs.
    Columns: the grouping overrides, jobs, finished, then `<metric> mean` and `<metric> std` per metric.
    """
    table = summary.table
    keys = [key for key in summary.varied if key not in REPLICATES]
    metrics = [
        column for column in table.columns
        if column not in [*summary.varied, "epochs"] and pd.api.types.is_numeric_dtype(table[column])
    ]  # fmt: skip
    finished = table[metrics].where(table["status"] == "ok")  # a failed job's last values do not count
    finished = finished.assign(jobs=1, finished=(table["status"] == "ok").astype(int))
    groups = finished.groupby([table[key].fillna("") for key in keys] if keys else [0] * len(table))
    columns = {"jobs": groups["jobs"].sum(), "finished": groups["finished"].sum()}
    for metric in metrics:
        columns[f"{metric} mean"] = groups[metric].mean()
        columns[f"{metric} std"] = groups[metric].std(ddof=1)
    return pd.DataFrame(columns).reset_index(drop=not keys)


def write_summary(sweep_dir: str | Path, mode: str = "max") -> str:
    """Write summary.csv and summary.md into the sweep directory, and when the sweep varies `seed`
    summary_by_recipe.csv and summary_by_recipe.png; returns the Markdown."""
    sweep_dir = Path(sweep_dir)
    summary = summarize(sweep_dir, mode)
    table, sorted_by, shared, varied = summary
    table.to_csv(sweep_dir / "summary.csv", index=False)
    lines = [f"# Sweep {sweep_dir}", "", f"{len(table)} jobs, sorted by {sorted_by} ({mode})."]
    if shared:
        lines.append("Shared overrides: " + " ".join(f"`{key}={value}`" for key, value in shared.items()))
    shown = table.astype(object).where(table.notna(), "")
    for metric in table.columns[(table.dtypes == float) & (table.columns != "wall_time_s")]:
        shown[metric] = table[metric].map(lambda value: "" if pd.isna(value) else f"{value:.4f}")
    # Overrides stay as Hydra recorded them (strings), not reformatted as numbers.
    lines += ["", shown.to_markdown(index=False, disable_numparse=True), ""]
    lines += out_of_fold(sweep_dir, summary)
    if set(REPLICATES) & set(varied):
        statistics = seed_statistics(summary)
        statistics.to_csv(sweep_dir / "summary_by_recipe.csv", index=False)
        seed_statistics_figure(statistics).savefig(sweep_dir / "summary_by_recipe.png")
        lines += [
            "## Mean ± standard deviation over seeds and folds",
            "",
            "Jobs that differ only in `seed` or `data.fold`, together; sample standard deviation (ddof 1). summary_by_recipe.csv "
            "holds the numbers, summary_by_recipe.png the bars.",
            "",
            plus_minus_table(statistics).to_markdown(index=False, disable_numparse=True),
            "",
        ]
    markdown = "\n".join(lines)
    (sweep_dir / "summary.md").write_text(markdown)
    return markdown


def out_of_fold(sweep_dir: Path, summary: Summary) -> list[str]:
    """Join the jobs' out-of-fold predictions (OOF_FILE, with the jobs' other varied overrides as columns)
    into the sweep's OOF_FILE; Markdown lines with each recipe's out-of-fold accuracy ([] without any)."""
    keys = [key for key in summary.varied if key != "data.fold"]
    tables = []
    for _, job in summary.table.iterrows():
        path = sweep_dir / str(job["job"]) / OOF_FILE
        if path.is_file():
            tables.append(pd.read_csv(path).assign(**{key: job[key] for key in keys}))
    if not tables:
        return []
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(sweep_dir / OOF_FILE, index=False)
    classes = [column for column in tables[0].columns if column not in (FILE_COLUMN, TARGET_COLUMN, "fold", *keys)]
    right = (table[classes].idxmax(axis=1) == table[TARGET_COLUMN].astype(str)).rename("accuracy")
    groups = right.groupby([table[key].astype(str) for key in keys]) if keys else right.groupby([0] * len(table))
    accuracy = groups.agg(["mean", "size"]).reset_index(drop=not keys)
    shown = accuracy.rename(columns={"mean": "out-of-fold accuracy", "size": "clips"})
    shown["out-of-fold accuracy"] = shown["out-of-fold accuracy"].map("{:.4f}".format)  # clips stay integers
    caption = f"Every held-out fold's clips by the model that never trained on them ({OOF_FILE})."
    return ["## Out-of-fold predictions", "", caption, "", shown.to_markdown(index=False, disable_numparse=True), ""]


def statistic_columns(statistics: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(the grouping overrides, the metrics) of a `seed_statistics` table."""
    metrics = [column.removesuffix(" mean") for column in statistics.columns if column.endswith(" mean")]
    return list(statistics.columns[: list(statistics.columns).index("jobs")]), metrics


def plus_minus_table(statistics: pd.DataFrame) -> pd.DataFrame:
    """`mean ± std` strings: seconds to 0.1, other metrics to 4 decimals; the mean alone for one job."""
    keys, metrics = statistic_columns(statistics)
    shown = statistics[[*keys, "jobs", "finished"]].astype(str)
    for metric in metrics:
        digits = 1 if metric in ("wall_time_s", EPOCH_TIME) else 4
        shown[metric] = [
            "" if pd.isna(mean) else f"{mean:.{digits}f}" + ("" if pd.isna(std) else f" ± {std:.{digits}f}")
            for mean, std in zip(statistics[f"{metric} mean"], statistics[f"{metric} std"])
        ]
    return shown


def seed_statistics_figure(statistics: pd.DataFrame) -> Figure:
    """Horizontal bars of the mean with the standard deviation as error bars, one bar per group (coloured
    by its last grouping override, the recipe in the study) and one panel per test metric and for the
    time per epoch."""
    keys, metrics = statistic_columns(statistics)
    panels = [metric for metric in metrics if metric.startswith("test/") or metric == EPOCH_TIME] or metrics[:1]
    labels = [", ".join(f"{key}={row[key]}" for key in keys) or "all jobs" for _, row in statistics.iterrows()]
    hue = statistics[keys[-1]] if keys else pd.Series([""] * len(statistics))
    colours = [f"C{sorted(hue.unique()).index(value) % 10}" for value in hue]
    figure = Figure(figsize=(1.5 + 3.5 * len(panels), 1.0 + 0.35 * len(statistics)), dpi=100, layout="constrained")
    positions = range(len(statistics))
    for axes, metric in zip(figure.subplots(1, len(panels), sharey=True, squeeze=False)[0], panels):
        mean, std = statistics[f"{metric} mean"], statistics[f"{metric} std"].fillna(0)  # one seed: no bar
        axes.barh(positions, mean, xerr=std, color=colours, capsize=3)
        axes.set_title(metric, fontsize=9)
        axes.grid(axis="x", alpha=0.3)
    figure.axes[0].set_yticks(positions, labels, fontsize=8)
    figure.axes[0].invert_yaxis()  # the table's order, top to bottom
    return figure


class SweepSummary(Callback):
    """Hydra callback: when a multirun ends, write the summary (`write_summary`) into its sweep
    directory and print its tables. `mode` is the direction of the optimized metric (max or min)."""

    def __init__(self, mode: str = "max") -> None:
        self.mode = mode

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if "optimized_metric" in config:  # predict and evaluate share the Hydra config, not the summary
            print(write_summary(config.hydra.sweep.dir, self.mode))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild the summary of a sweep directory (summary.csv, summary.md, summary_by_recipe.*).")
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory, e.g. outputs/train/multiruns/<time>")
    parser.add_argument("--mode", choices=("max", "min"), default="max", help="direction of the optimized metric")
    args = parser.parse_args(argv)
    print(write_summary(args.sweep_dir, args.mode))


if __name__ == "__main__":
    main()
