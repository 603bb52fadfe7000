"""A model's operating threshold: chosen from DET data for a target false-accept rate, stored beside the
model, detect's default unless detector.threshold is set."""

import json

import pandas as pd
import pytest

from speechcls.thresholds import DEFAULT_THRESHOLD, chosen_threshold, operating_point, store_threshold, threshold_file

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
    stored = store_threshold(model, operating_point(CURVE, 1.0), 1.0, 10.0)
    assert stored == threshold_file(model) == tmp_path / "epoch003-acc0.9100.threshold.json"
    assert json.loads(stored.read_text())["threshold"] == 0.8
    threshold, source = chosen_threshold(None, model)
    assert threshold == 0.8 and "stored with the model" in source and "1 false accepts an hour at 10 dB" in source
    assert chosen_threshold(0.42, model) == (0.42, "detector.threshold")
