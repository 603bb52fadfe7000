"""A run directory's record, metrics.json: what train and evaluate write and what sweep summaries read.

One shape for every writer: `status` ("ok" or "failed"), `metrics` (name -> value), and what else the
writer knows (`test_data`: which clips the test/ metrics are of; `epochs`, `wall_time_s`, `best_checkpoint`,
`error`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from speechcls.atomic import atomic_write

METRICS_FILE = "metrics.json"
# A k-fold job's predictions of its held-out fold (speechcls.train); a sweep's summary joins them.
OOF_FILE = "oof_predictions.csv"


def write_record(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write `record` as `run_dir`/metrics.json, atomically: a killed run never leaves half a file."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(run_dir / METRICS_FILE) as temporary:
        temporary.write_text(json.dumps(record, indent=2))
    return run_dir / METRICS_FILE


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """`run_dir`'s record, or {} where it has none (a run killed, or still running)."""
    path = Path(run_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
