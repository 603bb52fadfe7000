"""A model's operating threshold: chosen from DET data for a target false-accept rate (one, or one per
keyword), stored beside the model, detect's default unless detector.threshold is set."""

import itertools
import json

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from speechcls.thresholds import (
    DEFAULT_THRESHOLD,
    chosen_threshold,
    keyword_thresholds,
    operating_point,
    store_threshold,
    threshold_file,
)

# A hand-made DET curve: lower thresholds find more keywords and fire more often on nothing.
CURVE = pd.DataFrame(
    {
        "threshold": [0.3, 0.5, 0.7, 0.8, 0.9, 0.99],
        "frr": [0.02, 0.05, 0.08, 0.08, 0.20, 0.60],
        "fa_per_hour": [40.0, 6.0, 2.0, 0.9, 0.4, 0.0],
    }
).assign(keyword="all")


@pytest.mark.parametrize(
    ("target", "threshold", "frr"),
    [(1.0, 0.8, 0.08), (5.0, 0.7, 0.08), (10.0, 0.5, 0.05), (0.5, 0.9, 0.20), (0.0, 0.99, 0.60), (100.0, 0.3, 0.02)],
)
def test_the_operating_point_has_the_fewest_false_rejects_within_the_target_rate(target, threshold, frr):
    point = operating_point(CURVE, target)
    assert (point.threshold, point.frr) == (threshold, frr)
    assert point.fa_per_hour <= target


def test_no_threshold_that_strict_gives_none():
    assert operating_point(CURVE[CURVE.fa_per_hour > 0.3], 0.1) is None


def test_the_stored_threshold_is_the_default_and_the_override_wins(tmp_path):
    model = tmp_path / "epoch003-acc0.9100.ckpt"
    threshold, source = chosen_threshold(None, model)
    assert threshold == DEFAULT_THRESHOLD and source.startswith("the default")
    point = operating_point(CURVE, 1.0)
    stored = store_threshold(model, point.threshold, 1.0, 10.0, point)
    assert stored == threshold_file(model) == tmp_path / "epoch003-acc0.9100.threshold.json"
    assert json.loads(stored.read_text())["threshold"] == 0.8
    threshold, source = chosen_threshold(None, model)
    assert threshold == 0.8 and "stored with the model" in source and "1 false accepts an hour at 10 dB" in source
    assert chosen_threshold(0.42, model) == (0.42, "detector.threshold")


def test_per_keyword_thresholds_are_stored_and_read_back(tmp_path):
    model = tmp_path / "model.onnx"
    reached = pd.Series({"frr": 0.1, "fa_per_hour": 0.8})
    record = json.loads(store_threshold(model, {"yes": 0.9, "no": 0.6}, 1.0, 10.0, reached).read_text())
    assert record["threshold"] == {"yes": 0.9, "no": 0.6} and record["frr"] == 0.1
    threshold, source = chosen_threshold(None, model)
    assert threshold == {"yes": 0.9, "no": 0.6} and "stored with the model" in source


# Each keyword's curve when it alone fires: a few thresholds, each with its misses and false accepts.
keyword_curves = st.lists(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 4)), min_size=1, max_size=4), min_size=1, max_size=3
)


@given(keyword_curves, st.integers(0, 6))
def test_per_keyword_thresholds_miss_the_fewest_clips_within_the_false_accepts(curves, budget):
    """Against every combination of the keywords' thresholds (brute force)."""
    table = pd.DataFrame(
        [(f"word{k}", 0.1 * (i + 1), misses, false) for k, points in enumerate(curves) for i, (misses, false) in enumerate(points)],
        columns=["keyword", "threshold", "misses", "false_accepts"],
    )
    combinations = [
        (sum(misses for misses, _ in choice), sum(false for _, false in choice)) for choice in itertools.product(*curves)
    ]
    feasible = [misses for misses, false in combinations if false <= budget]
    chosen = keyword_thresholds(table, budget + 0.5)  # a fraction of a false accept allows none
    if not feasible:
        assert chosen is None
        return
    assert set(chosen) == set(table.keyword)
    picked = table.set_index(["keyword", "threshold"]).loc[list(chosen.items())]
    assert picked.false_accepts.sum() <= budget and picked.misses.sum() == min(feasible)
