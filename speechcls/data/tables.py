"""Reading the Kaggle layout's CSV tables with clear errors for malformed ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

FILE_COLUMN = "file_name"
TARGET_COLUMN = "target"
# The folders of a data root: the clips the tables name, and long noise recordings (the 12-class task's
# silence; Speech Commands' own name).
AUDIO_DIR = "audio_files"
NOISE_DIR = "_background_noise_"


class TableError(ValueError):
    """A CSV that cannot be used; the message names the file, row and problem."""


def read_table(path: str | Path, labelled: bool = True) -> pd.DataFrame:
    """Read `file_name[,target]` rows, checking columns, empty cells and duplicate file names.

    Row numbers in messages are the CSV's line numbers (header is line 1); the table keeps its path
    (`source`) and a 0-based row index, so later checks can name lines too (`line_numbers`).
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as error:
        raise TableError(f"{path}: empty CSV (expected a header with {FILE_COLUMN!r})") from error
    required = [FILE_COLUMN, TARGET_COLUMN] if labelled else [FILE_COLUMN]
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    if table.empty:
        raise TableError(f"{path}: no rows")
    table[FILE_COLUMN] = table[FILE_COLUMN].str.strip()
    for column in required:
        empty = table.index[table[column].str.strip() == ""]
        if len(empty):
            raise TableError(f"{path}: empty {column!r} on line(s) {listed(line_numbers(empty))}")
    duplicated = table.index[table[FILE_COLUMN].duplicated(keep=False)]
    if len(duplicated):
        name = table.loc[duplicated[0], FILE_COLUMN]
        raise TableError(f"{path}: duplicate file name {name!r} on lines {listed(line_numbers(duplicated))}")
    table = table.reset_index(drop=True)
    table.attrs["path"] = str(path)
    return table


def source(table: pd.DataFrame) -> str | None:
    """The CSV a `read_table` table (or a selection of its rows) came from; None for other tables."""
    return table.attrs.get("path")


def line_numbers(index: pd.Index) -> pd.Index:
    """CSV line numbers of rows of a `read_table` table, from their index."""
    return index + 2


def check_labels(table: pd.DataFrame, classes: list[str]) -> None:
    """A TableError naming the lines whose target is not among `classes` (the model's)."""
    unknown = table.index[~table[TARGET_COLUMN].isin(classes)]
    if len(unknown):
        labels = sorted(set(table.loc[unknown, TARGET_COLUMN]))
        where = f"{source(table)}: " if source(table) else ""
        raise TableError(
            f"{where}label(s) {labels} on line(s) {listed(line_numbers(unknown))} are not among the model's "
            f"{len(classes)} classes {list(classes)}"
        )


def listed(items: Sequence, show: Callable[[Any], str] = str, most: int = 5) -> str:
    """The first `most` items for a message, comma-separated, and how many more there are."""
    shown = ", ".join(show(item) for item in items[:most])
    return shown + (f" (+{len(items) - most} more)" if len(items) > most else "")
