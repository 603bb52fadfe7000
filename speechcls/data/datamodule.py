"""The Kaggle "speech-command-classification" layout as a LightningDataModule.

ROOT/train.csv (file_name,target), ROOT/audio_files/<file_name>, ROOT/sample_submission.csv (test files).
The data module owns the seeded, stratified train/validation split and the sorted class list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler, WeightedRandomSampler

from speechcls.audio import CLIP_SECONDS, SAMPLE_RATE
from speechcls.data.cache import WaveCache
from speechcls.data.dataset import WaveformDataset
from speechcls.data.device_batches import DeviceBatches
from speechcls.data.file_checks import REPORT_NAME, AudioCheck
from speechcls.data.splits import ValidationSplit
from speechcls.data.tables import (
    AUDIO_DIR,
    FILE_COLUMN,
    NOISE_DIR,
    TARGET_COLUMN,
    TableError,
    check_labels,
    line_numbers,
    listed,
    read_table,
)
from speechcls.data.twelve_class import CLASSES as TWELVE_CLASSES
from speechcls.data.twelve_class import as_keywords, check_task, silence_table, twelve_class_table

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TestSplit:
    """The clips the test/ metrics are of: their dataset, their rows (file_name, target and whatever
    condition columns the labels carry: engine, voice, channel) and the name reports give them.
    `is_validation`: the seeded validation split stands in (no test labels), so evaluating a checkpoint
    means something only with the training run's seed and validation fraction."""

    dataset: WaveformDataset
    table: pd.DataFrame
    name: str
    is_validation: bool = False


class SpeechDataModule(L.LightningDataModule):
    """`train.csv` split into training and validation clips (`speechcls.data.splits.ValidationSplit`: a
    stratified fraction, fold `fold` of `folds`, or none with `val_fraction=0`); test on `test_csv` if
    given, else on the validation split (`test_split()` says which).

    `task=12` makes it the 12-class task (`speechcls.data.twelve_class`): `unknown_clips` and
    `silence_clips` map each split (train, val, test) to its number of `_unknown_` clips (null: all the
    other words' clips) and of `_silence_` slices of ROOT/_background_noise_ (written under
    `silence_dir`); `unknown_csv` (file_name,target,split with split train or test) adds clips of
    words that are `_unknown_` only, kept out of the 35-word task.

    `synthesizer` is an optional object with `ensure(root)` (the built-in synthetic set) that creates
    the folder when it is missing. `classes` fixes the class list labels are indexed by (a
    checkpoint's, for evaluation); by default it is the sorted label set of `train.csv`.

    `balance_by` names a column of `train_csv` (e.g. `engine`): training then draws every value's clips
    equally often, with replacement, so a source with few clips is not drowned by a large one. An epoch
    is as many draws as the split holds (`balance_epoch="split"`) or as many as every value would need to
    be drawn as often as the largest one holds clips (`"largest"`: the large source's clips are seen as
    often as without balancing, and epochs are longer). Validation and test keep their clips as they are.

    `clips_per_class` keeps that many clips of each class of `train_csv` (a seeded draw, before the split):
    a small-data condition, or a learning curve, from any set.

    `cache` decodes each split once into a memory-mapped `WaveCache` under `cache_dir` (built in
    `prepare_data` for train and validation, on first use for the others). `on_device` (needs `cache`)
    holds the train and validation splits on the training device and draws the fitting batches there.

    Every table's files are checked once, from their headers, before anything reads them
    (`speechcls.data.file_checks`): `on_bad_file="error"` stops naming the first bad file, `"skip"` leaves
    bad files out and lists them in `report_dir`/bad_files.csv (default: the data root).
    """

    def __init__(
        self,
        root: str | Path,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        val_fraction: float = 0.2,
        folds: int | None = None,
        fold: int = 0,
        seed: int = 42,
        sample_rate: int = SAMPLE_RATE,
        clip_seconds: float = CLIP_SECONDS,
        audio_dir: str = AUDIO_DIR,
        train_csv: str = "train.csv",
        predict_csv: str = "sample_submission.csv",
        test_csv: str | None = None,
        synthesizer: Any = None,
        classes: Sequence[str] | None = None,
        cache: bool = False,
        cache_dir: str | Path | None = None,
        on_device: bool = False,
        on_bad_file: str = "error",
        report_dir: str | Path | None = None,
        task: int = 35,
        unknown_clips: Mapping[str, int | None] | None = None,
        silence_clips: Mapping[str, int] | None = None,
        silence_dir: str | Path | None = None,
        unknown_csv: str | None = None,
        balance_by: str | None = None,
        balance_epoch: str = "split",
        clips_per_class: int | None = None,
    ) -> None:
        super().__init__()
        if cache and cache_dir is None:
            raise ValueError("cache=true needs a cache_dir")
        if on_device and not cache:
            raise ValueError(
                "on_device=true needs cache=true: the device copy is made from the cache (or set on_device=false)"
            )
        if balance_epoch not in ("split", "largest"):
            raise ValueError(f"data.balance_epoch={balance_epoch!r}: expected 'split' or 'largest'")
        self.root = Path(root)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.validation = ValidationSplit(val_fraction, folds, fold, seed)
        self.seed = seed
        self.sample_rate = sample_rate
        self.clip_samples = int(round(sample_rate * clip_seconds))
        self.audio_dir = self.root / audio_dir
        self.train_csv = train_csv
        self.predict_csv = predict_csv
        self.test_csv = test_csv
        self.synthesizer = synthesizer
        self.classes: list[str] | None = list(classes) if classes is not None else None
        self.cache_dir = Path(cache_dir) if cache else None
        self.on_device = on_device
        self.audio_check = AudioCheck(on_bad_file, Path(report_dir or self.root) / REPORT_NAME)
        check_task(task, silence_clips or {}, silence_dir)
        self.task = task
        self.unknown_clips = dict(unknown_clips or {})
        self.silence_clips = dict(silence_clips or {})
        self.silence_dir = Path(silence_dir) if silence_dir is not None else None
        self.unknown_csv = unknown_csv
        self.balance_by = balance_by
        self.balance_epoch = balance_epoch
        self.clips_per_class = clips_per_class
        self.splits: dict[str, WaveformDataset] = {}
        self.table: pd.DataFrame | None = None  # every clip of the task with its split, made by setup

    def prepare_data(self) -> None:
        if self.synthesizer is not None:
            self.synthesizer.ensure(self.root)
        if self.cache_dir is not None:
            self.setup()  # builds the train and validation caches, once per node

    def setup(self, stage: str | None = None) -> None:
        if self.table is not None:
            return
        table = self.clips()
        if self.task == 12:
            table = twelve_class_table(table, self.unknown_clips, self.seed)
            silence = silence_table(
                self.root / NOISE_DIR, self.silence_clips, self.seed, self.sample_rate, self.clip_samples,
                self.silence_dir,
            )  # fmt: skip
            table = pd.concat([table, silence], ignore_index=True)
        if self.classes is None:
            self.classes = TWELVE_CLASSES if self.task == 12 else sorted(table[TARGET_COLUMN].unique())
        self.table = table
        for split in SPLITS:
            if (table.split == split).any():
                self.splits[split] = self._dataset(table[table.split == split], train=split == "train")

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

    def _dataset(self, table, train: bool = False, labelled: bool = True) -> WaveformDataset:
        paths = [self.audio_dir / name for name in table[FILE_COLUMN]]
        labels = None
        if labelled:
            check_labels(table, self.classes)
            index = {name: i for i, name in enumerate(self.classes)}
            labels = [index[target] for target in table[TARGET_COLUMN]]
        cache = None
        if self.cache_dir is not None:
            cache = WaveCache.ensure(paths, self.cache_dir, self.sample_rate, self.clip_samples)
        return WaveformDataset(
            paths, labels, train=train, sample_rate=self.sample_rate, length=self.clip_samples, cache=cache
        )

    def labelled_table(self, csv: str | Path) -> pd.DataFrame:
        """Any labelled CSV (file_name, target, ...; relative to the root or absolute) as usable rows, its
        targets those of the task."""
        table = self.audio_check.usable(read_table(self.root / csv), self.audio_dir)
        if self.task == 12:
            table[TARGET_COLUMN] = as_keywords(table[TARGET_COLUMN])
        return table

    def validation_name(self) -> str:
        """What the validation clips are (`ValidationSplit.name`), for run summaries."""
        return self.validation.name

    def test_split(self) -> TestSplit | None:
        """What the test/ metrics are of, for training and evaluation alike: the task's own test split
        (`test_csv`, with the 12-class task's drawn `_unknown_` and `_silence_` clips; a subclass's
        official list), or the validation split where there are no test labels; None without either."""
        self.setup()
        if "test" not in self.splits and self.test_csv is not None:  # read on first use, not for fitting
            rows = self.labelled_table(self.test_csv).assign(split="test")
            self.table = pd.concat([self.table, rows], ignore_index=True)
            self.splits["test"] = self._dataset(rows)
        if "test" not in self.splits and "val" not in self.splits:
            return None
        if "test" not in self.splits:
            rows = self.table[self.table.split == "val"]
            return TestSplit(self.splits["val"], rows, "the validation split (no data.test_csv)", is_validation=True)
        return TestSplit(self.splits["test"], self.table[self.table.split == "test"], self.test_name())

    def test_name(self) -> str:
        """How reports name the test split (`test_split`)."""
        return self.test_csv if self.task == 35 else f"{self.test_csv} as 12 classes, with _silence_ clips"

    def file_names(self, dataset: WaveformDataset) -> list[str]:
        """The dataset's files as the tables name them: relative to the audio folder, or absolute (the
        12-class task's silence clips)."""
        return [
            path.relative_to(self.audio_dir).as_posix() if path.is_relative_to(self.audio_dir) else str(path)
            for path in dataset.paths
        ]

    def predict_table(self):
        needs = f"every row of {self.predict_csv} needs a prediction"
        return self.audio_check.usable(read_table(self.root / self.predict_csv, labelled=False), self.audio_dir, needs)

    def balanced_draws(self) -> tuple[torch.Tensor, int] | None:
        """Under `balance_by`: each training clip's drawing weight, 1 / the size of its group (clips the
        12-class task adds, without a value, form one group), and how many clips an epoch draws."""
        if self.balance_by is None:
            return None
        groups = self.table.loc[self.table.split == "train", self.balance_by].fillna("")
        sizes = groups.value_counts()
        weights = torch.as_tensor(1.0 / groups.map(sizes).to_numpy(), dtype=torch.float)
        return weights, len(groups) if self.balance_epoch == "split" else len(sizes) * int(sizes.max())

    def _loader(self, dataset: WaveformDataset, sampler: Sampler[int] | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def _device_batches(self, dataset: WaveformDataset, sampler: Sampler[int] | None = None) -> DeviceBatches:
        trainer = self.trainer
        return DeviceBatches(
            dataset.cache,
            dataset.labels,
            self.batch_size,
            self.clip_samples,
            sampler=sampler,
            device=trainer.strategy.root_device if trainer else torch.device("cpu"),
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )

    def train_sampler(self) -> Sampler[int]:
        """A training epoch's order, for both loader paths: a seeded shuffle, or under `balance_by`
        `balanced_draws` drawn with replacement (each epoch its own draw)."""
        generator = torch.Generator().manual_seed(self.seed)
        balance = self.balanced_draws()
        if balance is None:
            return RandomSampler(self.splits["train"], generator=generator)
        weights, draws = balance
        return WeightedRandomSampler(weights, draws, generator=generator)

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        if self.on_device:
            return self._device_batches(self.splits["train"], self.train_sampler())
        return self._loader(self.splits["train"], sampler=self.train_sampler())

    def val_dataloader(self) -> DataLoader | DeviceBatches | list:
        if "val" not in self.splits:
            return []  # data.val_fraction=0: Lightning skips validation
        if self.on_device:
            return self._device_batches(self.splits["val"])
        return self._loader(self.splits["val"])

    def test_dataloader(self) -> DataLoader:
        # Always a DataLoader, also with on_device: evaluation reads the files' order from its dataset.
        split = self.test_split()
        if split is None:
            raise ValueError("no test split: no data.test_csv and no validation split (data.val_fraction=0)")
        return self._loader(split.dataset)

    def predict_dataset(self) -> WaveformDataset:
        return self._dataset(self.predict_table(), labelled=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset())
