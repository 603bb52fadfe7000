"""The Kaggle "speech-command-classification" layout as a LightningDataModule.

ROOT/train.csv (file_name,target), ROOT/audio_files/<file_name>, ROOT/sample_submission.csv (test files).
The data module turns its `ClipTable` (which clips, which split) into datasets and loaders.
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
from speechcls.data.clip_table import ClipTable
from speechcls.data.dataset import WaveformDataset
from speechcls.data.device_batches import DeviceBatches
from speechcls.data.file_checks import REPORT_NAME, AudioCheck
from speechcls.data.splits import ValidationSplit
from speechcls.data.tables import AUDIO_DIR, FILE_COLUMN, TARGET_COLUMN, check_labels
from speechcls.data.twelve_class import CLASSES as TWELVE_CLASSES

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
    given, else on the validation split (`test_split()` says which). Which clips are in which split
    (`task`, `unknown_clips`, `silence_clips`, `silence_dir`, `unknown_csv`, `clips_per_class`) is the
    `ClipTable`'s to say (`speechcls.data.clip_table`); the keyword arguments are the `data.*` config.

    `synthesizer` is an optional object with `ensure(root)` (the built-in synthetic set) that creates
    the folder when it is missing. `classes` fixes the class list labels are indexed by (a
    checkpoint's, for evaluation); by default it is the sorted label set of `train.csv`.

    `balance_by` names a column of `train_csv` (e.g. `engine`): training then draws every value's clips
    equally often, with replacement, so a source with few clips is not drowned by a large one. An epoch
    is as many draws as the split holds (`balance_epoch="split"`) or as many as every value would need to
    be drawn as often as the largest one holds clips (`"largest"`: the large source's clips are seen as
    often as without balancing, and epochs are longer). Validation and test keep their clips as they are.

    `cache` decodes each split once into a memory-mapped `WaveCache` under `cache_dir` (built in
    `prepare_data` for train and validation, on first use for the others). `on_device` (needs `cache`)
    holds the train and validation splits on the training device and draws the fitting batches there.

    Every table's files are checked once, from their headers, before anything reads them
    (`speechcls.data.file_checks`): `on_bad_file="error"` stops naming the first bad file, `"skip"` leaves
    bad files out and lists them in `report_dir`/bad_files.csv (default: the data root).
    """

    CLIP_TABLE = ClipTable

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
        self.seed = seed
        self.sample_rate = sample_rate
        self.clip_samples = int(round(sample_rate * clip_seconds))
        self.audio_dir = self.root / audio_dir
        self.clip_table = self.CLIP_TABLE(
            root=self.root,
            audio_dir=self.audio_dir,
            audio_check=AudioCheck(on_bad_file, Path(report_dir or self.root) / REPORT_NAME),
            validation=ValidationSplit(val_fraction, folds, fold, seed),
            seed=seed,
            sample_rate=sample_rate,
            clip_samples=self.clip_samples,
            train_csv=train_csv,
            predict_csv=predict_csv,
            test_csv=test_csv,
            task=task,
            unknown_clips=dict(unknown_clips or {}),
            silence_clips=dict(silence_clips or {}),
            silence_dir=Path(silence_dir) if silence_dir is not None else None,
            unknown_csv=unknown_csv,
            balance_by=balance_by,
            clips_per_class=clips_per_class,
        )
        self.synthesizer = synthesizer
        self.classes: list[str] | None = list(classes) if classes is not None else None
        self.cache_dir = Path(cache_dir) if cache else None
        self.on_device = on_device
        self.balance_epoch = balance_epoch
        self.splits: dict[str, WaveformDataset] = {}
        self.table: pd.DataFrame | None = None  # every clip of the task with its split, made by setup
        self.predict_rows: pd.DataFrame | None = None  # the clips to predict, checked once (predict_table)

    # The clip table's settings, which the loaders and callers read too: kept there only.
    @property
    def task(self) -> int:
        return self.clip_table.task

    @property
    def validation(self) -> ValidationSplit:
        return self.clip_table.validation

    @property
    def balance_by(self) -> str | None:
        return self.clip_table.balance_by

    def prepare_data(self) -> None:
        if self.synthesizer is not None:
            self.synthesizer.ensure(self.root)
        if self.cache_dir is not None:
            self.setup()  # builds the train and validation caches, once per node

    def setup(self, stage: str | None = None) -> None:
        if self.table is not None:
            return
        table = self.clip_table.rows()
        if self.classes is None:
            self.classes = TWELVE_CLASSES if self.task == 12 else sorted(table[TARGET_COLUMN].unique())
        self.table = table
        for split in SPLITS:
            if (table.split == split).any():
                self.splits[split] = self._dataset(table[table.split == split], train=split == "train")

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

    def validation_name(self) -> str:
        """What the validation clips are, for run summaries."""
        return self.clip_table.validation_name()

    def test_split(self) -> TestSplit | None:
        """What the test/ metrics are of, for training and evaluation alike: the task's own test split
        (`test_csv`, with the 12-class task's drawn `_unknown_` and `_silence_` clips; a subclass's
        official list), or the validation split where there are no test labels; None without either."""
        self.setup()
        if "test" not in self.splits and self.clip_table.test_csv is not None:  # read on first use, not for fitting
            rows = self.clip_table.labelled(self.clip_table.test_csv).assign(split="test")
            self.table = pd.concat([self.table, rows], ignore_index=True)
            self.splits["test"] = self._dataset(rows)
        if "test" not in self.splits and "val" not in self.splits:
            return None
        if "test" not in self.splits:
            rows = self.table[self.table.split == "val"]
            return TestSplit(self.splits["val"], rows, "the validation split (no data.test_csv)", is_validation=True)
        return TestSplit(self.splits["test"], self.table[self.table.split == "test"], self.clip_table.test_name())

    def file_names(self, dataset: WaveformDataset) -> list[str]:
        """The dataset's files as the tables name them: relative to the audio folder, or absolute (the
        12-class task's silence clips)."""
        return [
            path.relative_to(self.audio_dir).as_posix() if path.is_relative_to(self.audio_dir) else str(path)
            for path in dataset.paths
        ]

    def predict_table(self) -> pd.DataFrame:
        # Prediction builds its loader from these rows and checks the submission against them: every file
        # is opened by the check once, not once for each.
        if self.predict_rows is None:
            self.predict_rows = self.clip_table.predict_rows()
        return self.predict_rows

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
