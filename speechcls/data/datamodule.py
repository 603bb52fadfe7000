"""The Kaggle "speech-command-classification" layout as a LightningDataModule.

ROOT/train.csv (file_name,target), ROOT/audio_files/<file_name>, ROOT/sample_submission.csv (test files).
The data module owns the seeded, stratified train/validation split and the sorted class list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader

from speechcls.audio import CLIP_SECONDS, SAMPLE_RATE
from speechcls.data.dataset import WaveformDataset
from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN, TableError, read_table


class SpeechDataModule(L.LightningDataModule):
    """Stratified train/val split of `train.csv`; test on `test_labels` if given, else on val.

    `generator` is an optional object with `ensure(root)` (the built-in synthetic set) that creates
    the folder when it is missing.
    """

    def __init__(
        self,
        root: str | Path,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        val_fraction: float = 0.2,
        seed: int = 42,
        sample_rate: int = SAMPLE_RATE,
        clip_seconds: float = CLIP_SECONDS,
        audio_dir: str = "audio_files",
        train_csv: str = "train.csv",
        predict_csv: str = "sample_submission.csv",
        test_labels: str | None = None,
        generator: Any = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.val_fraction = val_fraction
        self.seed = seed
        self.sample_rate = sample_rate
        self.clip_samples = int(round(sample_rate * clip_seconds))
        self.audio_dir = self.root / audio_dir
        self.train_csv = train_csv
        self.predict_csv = predict_csv
        self.test_labels = test_labels
        self.generator = generator
        self.classes: list[str] | None = None
        self.splits: dict[str, WaveformDataset] = {}

    def prepare_data(self) -> None:
        if self.generator is not None:
            self.generator.ensure(self.root)

    def setup(self, stage: str | None = None) -> None:
        if self.classes is not None:
            return
        if not self.root.is_dir():
            raise FileNotFoundError(f"data root {self.root} does not exist")
        table = read_table(self.root / self.train_csv)
        self.classes = sorted(table[TARGET_COLUMN].unique())
        train_rows, val_rows = self._split(table)
        self.splits["train"] = self._dataset(train_rows, train=True)
        self.splits["val"] = self._dataset(val_rows)

    def _split(self, table):
        counts = table[TARGET_COLUMN].value_counts()
        too_small = counts[counts < 2]
        if len(too_small):
            raise TableError(
                f"{self.root / self.train_csv}: a stratified split needs at least 2 clips per class; "
                f"{dict(too_small)} have fewer"
            )
        return train_test_split(
            table, test_size=self.val_fraction, random_state=self.seed, stratify=table[TARGET_COLUMN]
        )

    def _dataset(self, table, train: bool = False, labelled: bool = True) -> WaveformDataset:
        paths = [self.audio_dir / name for name in table[FILE_COLUMN]]
        labels = None
        if labelled:
            index = {name: i for i, name in enumerate(self.classes)}
            unknown = sorted(set(table[TARGET_COLUMN]) - set(index))
            if unknown:
                raise TableError(f"labels {unknown} are not among the {len(index)} training classes")
            labels = [index[target] for target in table[TARGET_COLUMN]]
        return WaveformDataset(paths, labels, train=train, sample_rate=self.sample_rate, length=self.clip_samples)

    def labelled_dataset(self, csv: str | Path) -> WaveformDataset:
        """Any `file_name,target` CSV (relative to the root or absolute) as an evaluation set."""
        self.setup()
        return self._dataset(read_table(self.root / csv))

    def predict_table(self):
        return read_table(self.root / self.predict_csv, labelled=False)

    def _loader(self, dataset: WaveformDataset, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits["train"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits["val"])

    def test_dataloader(self) -> DataLoader:
        if self.test_labels is None:
            return self.val_dataloader()
        if "test" not in self.splits:
            self.splits["test"] = self.labelled_dataset(self.test_labels)
        return self._loader(self.splits["test"])

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._dataset(self.predict_table(), labelled=False))
