"""Kaggle submissions (`file_name,target`): the checks a submission must pass, and writing one safely.

Shared by prediction (check before reporting a file done) and evaluation (check before scoring).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from speechcls.atomic import atomic_write
from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN, listed


class SubmissionError(ValueError):
    """A submission that does not answer its sample; the message says what is missing or wrong."""


def check_submission(
    submission: pd.DataFrame,
    expected_files: Sequence[str],
    classes: Sequence[str],
    ordered: bool = True,
    name: str = "submission",
) -> None:
    """Raise SubmissionError unless `submission` has one row per expected file and known labels.

    `ordered`: the rows must also come in `expected_files` order (as Kaggle's sample has them).
    """
    columns = [FILE_COLUMN, TARGET_COLUMN]
    if list(submission.columns) != columns:
        raise SubmissionError(f"{name}: columns must be {columns}, found {list(submission.columns)}")
    files = submission[FILE_COLUMN].tolist()
    duplicated = sorted(set(submission[FILE_COLUMN][submission[FILE_COLUMN].duplicated()]))
    if duplicated:
        raise SubmissionError(f"{name}: file names listed more than once: {listed(duplicated, repr)}")
    expected = set(expected_files)
    for names, problem in ((expected - set(files), "missing"), (set(files) - expected, "not in the sample")):
        if names:
            raise SubmissionError(f"{name}: {len(names)} file(s) {problem}: {listed(sorted(names), repr)}")
    if ordered and files != list(expected_files):
        row = next(i for i, (got, want) in enumerate(zip(files, expected_files)) if got != want)
        raise SubmissionError(
            f"{name}: rows are not in the sample's order (line {row + 2} is {files[row]!r}, "
            f"expected {expected_files[row]!r})"
        )
    unknown = sorted(set(submission[TARGET_COLUMN]) - set(classes))
    if unknown:
        raise SubmissionError(f"{name}: unknown label(s) {listed(unknown, repr)}; known: {list(classes)}")


def write_csv_atomically(table: pd.DataFrame, path: str | Path) -> Path:
    """Write `table` to `path` through a temporary file and a rename: readers never see half a file."""
    with atomic_write(path) as temporary:
        table.to_csv(temporary, index=False)
    return Path(path)


def write_submission(submission: pd.DataFrame, path: str | Path, sample: pd.DataFrame, classes: Sequence[str]) -> Path:
    """Check `submission` against the sample's rows and `classes`, then write it atomically."""
    check_submission(submission, sample[FILE_COLUMN].tolist(), classes, name=str(path))
    return write_csv_atomically(submission, path)
