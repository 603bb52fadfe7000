"""A model's test predictions as a table, and accuracy by recording condition: the engine, voice and
channel columns a labels CSV may carry (the built-in sets' test_labels.csv does). Read by both `train`
and `evaluate`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import torch

from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN

if TYPE_CHECKING:
    from speechcls.data.datamodule import SpeechDataModule

CONDITION_COLUMNS = ("engine", "voice", "channel")
PREDICTED_COLUMN = "predicted"
CONFIDENCE_COLUMN = "confidence"


def results_of_test_split(datamodule: SpeechDataModule, probabilities: torch.Tensor) -> pd.DataFrame:
    """file_name, target, predicted and confidence of each clip of the data module's test split (the
    rows of `probabilities`, in its dataset's order), with the condition columns its labels carry."""
    split, classes = datamodule.test_split(), datamodule.classes
    confidence, predicted = probabilities.max(dim=1)
    results = pd.DataFrame(
        {
            FILE_COLUMN: datamodule.file_names(split.dataset),
            TARGET_COLUMN: [classes[i] for i in split.dataset.labels],
            PREDICTED_COLUMN: [classes[i] for i in predicted.tolist()],
            CONFIDENCE_COLUMN: confidence.numpy(),
        }
    )
    return with_conditions(results, split.table)


def with_conditions(results: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """`results` (file_name, target, predicted, ...) with the condition columns `labels` has, by file."""
    present = [column for column in CONDITION_COLUMNS if column in labels and labels[column].notna().any()]
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
