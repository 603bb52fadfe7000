"""A detector's operating threshold, chosen per model and stored beside it.

`evaluate_streams` picks, from a model's DET data on the benchmark streams, the lowest threshold whose
false accepts an hour stay within a target (the one with the fewest false rejects there) and writes it
beside the model file (`<model>.threshold.json`); `detect` uses it unless `detector.threshold` is set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from speechcls.atomic import atomic_write

# Where neither the command line nor the model says otherwise.
DEFAULT_THRESHOLD = 0.8


def threshold_file(model: str | Path) -> Path:
    """The stored threshold of a checkpoint or exported model: `x.ckpt` -> `x.threshold.json`."""
    return Path(model).with_suffix(".threshold.json")


def operating_point(curve: pd.DataFrame, fa_per_hour: float) -> pd.Series | None:
    """The row of a DET curve (threshold, frr, fa_per_hour over all keywords) with the fewest false
    rejects among those with at most `fa_per_hour` false accepts an hour (the lowest threshold of
    them on ties); None where no threshold is that strict."""
    allowed = curve[curve.fa_per_hour <= fa_per_hour].sort_values(["frr", "threshold"], kind="stable")
    return allowed.iloc[0] if len(allowed) else None


def store_threshold(model: str | Path, point: pd.Series, fa_per_hour: float, snr_db: float) -> Path:
    record = {
        "threshold": float(point.threshold),
        "target_fa_per_hour": fa_per_hour,
        "snr_db": snr_db,
        "frr": float(point.frr),
        "fa_per_hour": float(point.fa_per_hour),
    }
    with atomic_write(threshold_file(model)) as temporary:
        temporary.write_text(json.dumps(record, indent=2))
    return threshold_file(model)


def chosen_threshold(override: float | Mapping[str, float] | None, model: str | Path) -> tuple[float | dict, str]:
    """The threshold detection uses and where it comes from: `override` (detector.threshold: one, or one
    per keyword), else the one stored with `model`, else DEFAULT_THRESHOLD."""
    if override is not None:
        return dict(override) if isinstance(override, Mapping) else float(override), "detector.threshold"
    path = threshold_file(model)
    if path.is_file():
        record = json.loads(path.read_text())
        return record["threshold"], (
            f"stored with the model ({path.name}: {record['target_fa_per_hour']:g} false accepts an hour "
            f"at {record['snr_db']:g} dB on the benchmark streams)"
        )
    return DEFAULT_THRESHOLD, f"the default (no {path.name}; python -m speechcls.evaluate_streams stores one)"


def describe(threshold: float | Mapping[str, float]) -> str:
    """For logs: `0.7256`, or `per keyword down 0.6100, go 0.8300, ...`."""
    if isinstance(threshold, Mapping):
        return "per keyword " + ", ".join(f"{word} {value:.4f}" for word, value in sorted(threshold.items()))
    return f"{threshold:.4f}"
