"""Reading the Kaggle layout's CSV tables with clear errors for malformed ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FILE_COLUMN = "file_name"
TARGET_COLUMN = "target"


class TableError(ValueError):
    """A CSV that cannot be used; the message names the file, row and problem."""


def read_table(path: str | Path, labelled: bool = True) -> pd.DataFrame:
    """Read `file_name[,target]` rows, checking columns, empty cells and duplicate file names.

    Row numbers in messages are the CSV's line numbers (header is line 1).
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
            raise TableError(f"{path}: empty {column!r} on line(s) {_lines(empty)}")
    duplicated = table.index[table[FILE_COLUMN].duplicated(keep=False)]
    if len(duplicated):
        name = table.loc[duplicated[0], FILE_COLUMN]
        raise TableError(f"{path}: duplicate file name {name!r} on lines {_lines(duplicated)}")
    return table.reset_index(drop=True)


def _lines(index: pd.Index, most: int = 5) -> str:
    lines = [str(i + 2) for i in index[:most]]
    return ", ".join(lines) + (f" (+{len(index) - most} more)" if len(index) > most else "")
