"""Sweep summaries: one row per job of a Hydra multirun, written as summary.csv and summary.md.

Every job directory holds `.hydra/overrides.yaml` and `.hydra/config.yaml` (written by Hydra) and
`metrics.json` (written by `speechcls.train`, for a failed job too). The `SweepSummary` Hydra callback
(conf/hydra/default.yaml) writes and prints the summary when a multirun ends; it can be rebuilt later:

    python -m speechcls.summarize outputs/train/multiruns/2025-01-01_12-00-00
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

METRICS_FILE = "metrics.json"
HYDRA_DIR = ".hydra"


def job_dirs(sweep_dir: str | Path) -> list[Path]:
    """The sweep's job directories (those Hydra wrote overrides into), in job-number order."""
    jobs = [path.parent.parent for path in Path(sweep_dir).glob(f"*/{HYDRA_DIR}/overrides.yaml")]
    return sorted(jobs, key=lambda job: (not job.name.isdigit(), int(job.name) if job.name.isdigit() else 0, job.name))


def read_job(job_dir: Path) -> dict[str, Any]:
    """A job's overrides, optimized metric and metrics.json (status `unfinished` when there is none)."""
    overrides = yaml.safe_load((job_dir / HYDRA_DIR / "overrides.yaml").read_text()) or []
    config = yaml.safe_load((job_dir / HYDRA_DIR / "config.yaml").read_text())
    metrics_file = job_dir / METRICS_FILE
    record = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
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


def summarize(sweep_dir: str | Path, mode: str = "max") -> Summary:
    """One row per job of the sweep, sorted by the optimized metric in direction `mode`.

    Columns: job, the overrides that differ between jobs, the best validation value of the optimized
    metric, its test counterpart, epochs, wall time, checkpoint, status and error.
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
            "epochs": job["epochs"],
            "wall_time_s": job["wall_time_s"],
            "checkpoint": job["checkpoint"],
            "status": job["status"],
            "error": " ".join(str(job["error"]).split()),
        }
        for job in jobs
    ]
    table = pd.DataFrame(rows).astype({"epochs": "Int64"})
    table = table.sort_values(best, ascending=mode == "min", na_position="last", kind="stable")
    return Summary(table.reset_index(drop=True), best, shared)


def write_summary(sweep_dir: str | Path, mode: str = "max") -> str:
    """Write summary.csv and summary.md into the sweep directory; returns the Markdown."""
    sweep_dir = Path(sweep_dir)
    table, sorted_by, shared = summarize(sweep_dir, mode)
    table.to_csv(sweep_dir / "summary.csv", index=False)
    lines = [f"# Sweep {sweep_dir}", "", f"{len(table)} jobs, sorted by {sorted_by} ({mode})."]
    if shared:
        lines.append("Shared overrides: " + " ".join(f"`{key}={value}`" for key, value in shared.items()))
    shown = table.astype(object).where(table.notna(), "")
    for metric in table.columns[(table.dtypes == float) & (table.columns != "wall_time_s")]:
        shown[metric] = table[metric].map(lambda value: "" if pd.isna(value) else f"{value:.4f}")
    # Overrides stay as Hydra recorded them (strings), not reformatted as numbers.
    markdown = "\n".join([*lines, "", shown.to_markdown(index=False, disable_numparse=True), ""])
    (sweep_dir / "summary.md").write_text(markdown)
    return markdown


class SweepSummary(Callback):
    """Hydra callback: when a multirun ends, write summary.csv and summary.md into its sweep
    directory and print the table. `mode` is the direction of the optimized metric (max or min)."""

    def __init__(self, mode: str = "max") -> None:
        self.mode = mode

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if "optimized_metric" in config:  # predict and evaluate share the Hydra config, not the summary
            print(write_summary(config.hydra.sweep.dir, self.mode))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild summary.csv and summary.md of a sweep directory.")
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory, e.g. outputs/train/multiruns/<time>")
    parser.add_argument("--mode", choices=("max", "min"), default="max", help="direction of the optimized metric")
    args = parser.parse_args(argv)
    print(write_summary(args.sweep_dir, args.mode))


if __name__ == "__main__":
    main()
