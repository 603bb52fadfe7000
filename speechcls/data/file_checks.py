"""Every listed audio file checked once, up front, so a broken one stops a run before training starts.

Only headers are read (existence, size, format, frame count, the declared size of the data), except
for float files: they are the only kind that can hold NaN or infinite samples, so they are decoded in
full. `data.on_bad_file=error` stops with one message naming the first bad file, its CSV line and the
problem; `skip` leaves bad files out and lists them in a report CSV.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from speechcls.atomic import atomic_write
from speechcls.audio import AudioError
from speechcls.data.tables import FILE_COLUMN, line_numbers, source

log = logging.getLogger(__name__)

ON_BAD_FILE = ("error", "skip")
REPORT_NAME = "bad_files.csv"
FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}
# libsndfile reads a truncated WAV without complaint; its header log notes the mismatch as
# "data : 32000 (should be 15978)".
TRUNCATED = re.compile(r"^data\s*:\s*(\d+) \(should be (\d+)\)", re.MULTILINE)


def audio_problem(path: str | Path) -> str | None:
    """What makes `path` unusable as audio, or None when it is fine."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
    except FileNotFoundError:
        return "file not found"
    except OSError as error:
        return f"cannot read the file ({error.strerror})"
    try:
        with sf.SoundFile(path) as audio:
            truncated = TRUNCATED.search(audio.extra_info)
            if truncated:
                return f"truncated: the header declares {truncated[1]} bytes of audio, the file holds {truncated[2]}"
            if audio.frames == 0:
                return "no audio samples"
            if audio.subtype in FLOAT_SUBTYPES and not np.isfinite(audio.read(dtype="float32")).all():
                return "contains NaN or infinite samples"
    except (RuntimeError, OSError) as error:
        return f"not readable as audio ({getattr(error, 'error_string', error)})"
    return None


def find_bad_files(table: pd.DataFrame, audio_dir: str | Path) -> pd.DataFrame:
    """The unusable files of `table`: columns csv, line (when it is a `read_table` table), file, problem;
    indexed like `table`."""
    paths = table[FILE_COLUMN].map(lambda name: str(Path(audio_dir) / name))
    bad = paths.map(audio_problem).dropna()
    return pd.DataFrame(
        {
            "csv": source(table),
            "line": line_numbers(bad.index) if source(table) else None,
            "file": paths[bad.index],
            "problem": bad,
        },
        index=bad.index,
    )


class AudioCheck:
    """Applies `on_bad_file` to the tables of one data module; skipped files accumulate in one report."""

    def __init__(self, on_bad_file: str, report_path: str | Path) -> None:
        if on_bad_file not in ON_BAD_FILE:
            raise ValueError(f"on_bad_file={on_bad_file!r}: expected one of {ON_BAD_FILE}")
        self.on_bad_file = on_bad_file
        self.report_path = Path(report_path)
        self.skipped: list[pd.DataFrame] = []

    def usable(self, table: pd.DataFrame, audio_dir: str | Path, needs_every_row: str | None = None) -> pd.DataFrame:
        """`table` without its bad files, or an AudioError naming the first one.

        `needs_every_row` says why this table's rows cannot be left out (prediction): then bad files
        are an error whatever `on_bad_file` says.
        """
        bad = find_bad_files(table, audio_dir)
        if bad.empty:
            return table
        first = bad.iloc[0]
        where = f"{first.csv} line {first.line}: " if first.csv else ""
        message = f"{where}{first.file}: {first.problem}"
        if len(bad) > 1:
            message += f" (and {len(bad) - 1} more bad file(s) in that table)"
        if needs_every_row:
            raise AudioError(f"{message}; {needs_every_row}, so bad files cannot be skipped")
        if self.on_bad_file == "error":
            raise AudioError(f"{message}; fix or remove them, or set data.on_bad_file=skip to leave them out")
        self.skipped.append(bad)
        with atomic_write(self.report_path) as temporary:
            pd.concat(self.skipped).to_csv(temporary, index=False)
        log.warning("left out %d bad audio file(s) of %s; see %s", len(bad), first.csv or "the data", self.report_path)
        return table.drop(index=bad.index)
