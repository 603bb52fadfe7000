"""How train.csv becomes training and validation clips: a seeded stratified fraction, one fold of a
seeded stratified k-fold partition, or every clip for training. A split that cannot be made stops before
any work, naming the class counts and the option to change."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from speechcls.data.tables import TARGET_COLUMN, TableError


@dataclass(frozen=True)
class ValidationSplit:
    """`val_fraction` of the clips (0: none, every clip trains), or with `folds` the clips of fold
    `fold` of a stratified `folds`-fold partition; both drawn with `seed`, stratified by class."""

    val_fraction: float = 0.2
    folds: int | None = None
    fold: int = 0
    seed: int = 42

    def __post_init__(self) -> None:
        if self.folds is not None and not (self.folds >= 2 and 0 <= self.fold < self.folds):
            raise ValueError(f"data.folds={self.folds}, data.fold={self.fold}: need folds >= 2 and 0 <= fold < folds")
        if self.folds is None and not 0 <= self.val_fraction < 1:
            raise ValueError(f"data.val_fraction={self.val_fraction}: expected at least 0 (none) and less than 1")

    @property
    def name(self) -> str:
        """What the validation clips are, for run summaries."""
        if self.folds is not None:
            return f"fold {self.fold} of {self.folds} (stratified, seed {self.seed})"
        if self.val_fraction == 0:
            return "none: every clip trains (data.val_fraction=0), the last epoch is the result"
        return f"{self.val_fraction:.0%} of the clips (stratified, seed {self.seed})"

    def split(self, table: pd.DataFrame, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(training rows, validation rows) of `table`; `source` names it in errors."""
        counts = table[TARGET_COLUMN].value_counts().sort_values()
        shown = ", ".join(f"{name}: {count}" for name, count in counts.items())
        if self.folds is not None:
            if counts.min() < self.folds:
                raise TableError(
                    f"{source}: data.folds={self.folds} needs at least {self.folds} clips of every class; "
                    f"clips per class: {shown} (lower data.folds)"
                )
            folds = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
            train, val = list(folds.split(table, table[TARGET_COLUMN]))[self.fold]
            return table.iloc[train], table.iloc[val]
        if self.val_fraction == 0:
            return table, table.iloc[:0]
        # scikit-learn's rule: both sides of a stratified split hold at least one clip of every class.
        held_out = math.ceil(self.val_fraction * len(table))
        if counts.min() < 2 or min(held_out, len(table) - held_out) < len(counts):
            raise TableError(
                f"{source}: a stratified validation split of data.val_fraction={self.val_fraction} needs 2 clips of "
                f"every class and {len(counts)} clips (one a class) on each side; {len(table)} clips would give "
                f"{held_out} to validation; clips per class: {shown} (change data.val_fraction, or set "
                "data.val_fraction=0 to train on every clip)"
            )
        return train_test_split(
            table, test_size=self.val_fraction, random_state=self.seed, stratify=table[TARGET_COLUMN]
        )
