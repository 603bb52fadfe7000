"""Which clips a task has and which split each is in: the table a `SpeechDataModule` makes its datasets of.

ROOT/train.csv (file_name,target), ROOT/audio_files/<file_name>, ROOT/sample_submission.csv (test files):
the Kaggle "speech-command-classification" layout. Its rules apply here once: usable files only
(`speechcls.data.file_checks`), the validation split (`speechcls.data.splits`), a small-data draw, the
column to balance by, and the 12-class task's `_unknown_` and `_silence_` clips (`speechcls.data.twelve_class`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE
from speechcls.data.file_checks import AudioCheck
from speechcls.data.splits import ValidationSplit
from speechcls.data.tables import FILE_COLUMN, NOISE_DIR, TARGET_COLUMN, TableError, line_numbers, listed, read_table
from speechcls.data.twelve_class import as_keywords, check_task, silence_table, twelve_class_table


@dataclass
class ClipTable:
    """The clips of `train_csv` split into train and val by `validation`; with `task=12` also the test
    split (`test_csv`), `unknown_csv`'s clips (file_name,target,split with split train or test: words that
    are `_unknown_` only, kept out of the 35-word task), `unknown_clips` `_unknown_` clips a split (null: all
    the other words' clips) and `silence_clips` `_silence_` slices of ROOT/_background_noise_ a split
    (written under `silence_dir`). `clips_per_class` keeps that many clips of each class (a seeded draw,
    before the split); `balance_by` names a column the table keeps for balanced drawing."""

    root: Path
    audio_dir: Path
    audio_check: AudioCheck
    validation: ValidationSplit = field(default_factory=ValidationSplit)
    seed: int = 42
    sample_rate: int = SAMPLE_RATE
    clip_samples: int = CLIP_SAMPLES
    train_csv: str = "train.csv"
    predict_csv: str = "sample_submission.csv"
    test_csv: str | None = None
    task: int = 35
    unknown_clips: dict[str, int | None] = field(default_factory=dict)
    silence_clips: dict[str, int] = field(default_factory=dict)
    silence_dir: Path | None = None
    unknown_csv: str | None = None
    balance_by: str | None = None
    clips_per_class: int | None = None

    def __post_init__(self) -> None:
        check_task(self.task, self.silence_clips, self.silence_dir)

    def rows(self) -> pd.DataFrame:
        """Every clip of the task with its split: `clips()`, and for the 12-class task its drawn
        `_unknown_` and `_silence_` clips."""
        table = self.clips()
        if self.task != 12:
            return table
        table = twelve_class_table(table, self.unknown_clips, self.seed)
        silence = silence_table(
            self.root / NOISE_DIR, self.silence_clips, self.seed, self.sample_rate, self.clip_samples, self.silence_dir
        )
        return pd.concat([table, silence], ignore_index=True)

    def clips(self) -> pd.DataFrame:
        """Every clip (file_name, target, split): train.csv split into train and val; with the 12-class
        task also the test split (test_csv) and unknown_csv's clips."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"data root {self.root} does not exist (set data.root to a Kaggle-layout folder)")
        if not self.audio_dir.is_dir():
            raise FileNotFoundError(f"audio folder {self.audio_dir} does not exist")
        table = self.audio_check.usable(read_table(self.root / self.train_csv), self.audio_dir)
        test = None
        if self.task == 12:
            extra = self.unknown_table()
            table = pd.concat([table, extra[extra.split == "train"]], ignore_index=True)
            if self.test_csv is not None:
                test = self.audio_check.usable(read_table(self.root / self.test_csv), self.audio_dir)
                test = pd.concat([test, extra[extra.split == "test"]], ignore_index=True).assign(split="test")
        columns = [FILE_COLUMN, TARGET_COLUMN]
        if self.balance_by is not None:
            if self.balance_by not in table:
                raise TableError(
                    f"{self.root / self.train_csv}: data.balance_by={self.balance_by!r} needs that column; "
                    f"found {list(table.columns)}"
                )
            columns.append(self.balance_by)
        table = table[columns]
        if self.clips_per_class is not None:
            shuffled = table.sample(frac=1, random_state=self.seed)
            table = shuffled.groupby(TARGET_COLUMN).head(self.clips_per_class).sort_index()
        train_rows, val_rows = self.validation.split(table, str(self.root / self.train_csv))
        return pd.concat([train_rows.assign(split="train"), val_rows.assign(split="val"), test], ignore_index=True)

    def unknown_table(self) -> pd.DataFrame:
        """unknown_csv's clips (file_name, target, split), none without it."""
        if self.unknown_csv is None:
            return pd.DataFrame(columns=[FILE_COLUMN, TARGET_COLUMN, "split"])
        table = self.audio_check.usable(read_table(self.root / self.unknown_csv), self.audio_dir)
        wrong = table.index[~table.split.isin(["train", "test"])] if "split" in table else table.index
        if len(wrong):
            lines = listed(list(line_numbers(wrong)))
            raise TableError(f"{self.root / self.unknown_csv}: split must be train or test (line(s) {lines})")
        return table[[FILE_COLUMN, TARGET_COLUMN, "split"]]

    def labelled(self, csv: str | Path) -> pd.DataFrame:
        """Any labelled CSV (file_name, target, ...; relative to the root or absolute) as usable rows, its
        targets those of the task."""
        table = self.audio_check.usable(read_table(self.root / csv), self.audio_dir)
        return as_keywords(table) if self.task == 12 else table

    def predict_rows(self) -> pd.DataFrame:
        needs = f"every row of {self.predict_csv} needs a prediction"
        return self.audio_check.usable(read_table(self.root / self.predict_csv, labelled=False), self.audio_dir, needs)

    def validation_name(self) -> str:
        """What the validation clips are (`ValidationSplit.name`), for run summaries."""
        return self.validation.name

    def test_name(self) -> str:
        """How reports name the test split."""
        return self.test_csv if self.task == 35 else f"{self.test_csv} as 12 classes, with _silence_ clips"
