"""Accuracy by recording condition: the engine, voice and channel columns a labels CSV may carry
(the built-in sets' test_labels.csv does), read by both `train` and `evaluate`."""

from __future__ import annotations

import pandas as pd

from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN

CONDITION_COLUMNS = ("engine", "voice", "channel")
PREDICTED_COLUMN = "predicted"


def with_conditions(results: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """`results` (file_name, target, predicted, ...) with the condition columns `labels` has, by file."""
    present = [column for column in CONDITION_COLUMNS if column in labels]
    if not present:
        return results
    return results.merge(labels[[FILE_COLUMN, *present]], on=FILE_COLUMN, how="left", validate="one_to_one")


def accuracy_by_condition(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (condition, value) of each condition column in `results`: clips and accuracy."""
    right = results[TARGET_COLUMN] == results[PREDICTED_COLUMN]
    tables = [
        right.groupby(results[column], sort=True).agg(clips="size", accuracy="mean").reset_index(names="value")
        .assign(condition=column)
        for column in CONDITION_COLUMNS
        if column in results
    ]
    if not tables:
        return pd.DataFrame(columns=["condition", "value", "clips", "accuracy"])
    return pd.concat(tables, ignore_index=True)[["condition", "value", "clips", "accuracy"]]
