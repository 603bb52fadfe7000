"""Speech Commands v0.02 as released, with its official split, as a ClipTable and a SpeechDataModule.

ROOT/<word>/<file>.wav            one folder per word (35 in v0.02)
ROOT/validation_list.txt          <word>/<file>.wav of the validation split, one per line
ROOT/testing_list.txt             the same for the test split; every other clip is for training
ROOT/_background_noise_/*.wav     long noise recordings, the source of the 12-class task's silence

`task=35` makes every word a class. `task=12` is the benchmark task of the data set's paper, built as
`speechcls.data.twelve_class` describes (silence sliced from ROOT/_background_noise_).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from speechcls.data.clip_table import ClipTable
from speechcls.data.datamodule import SpeechDataModule
from speechcls.data.tables import FILE_COLUMN, NOISE_DIR, TARGET_COLUMN

SPLIT_LISTS = {"val": "validation_list.txt", "test": "testing_list.txt"}  # train: every other clip


class SpeechCommandsClips(ClipTable):
    """The clips of a Speech Commands v0.02 folder in their official train/validation/test split."""

    def clips(self) -> pd.DataFrame:
        """Every clip of the task: file_name (relative to the root, or absolute), target and split."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"data root {self.root} does not exist (set data.root to a Speech Commands folder)")
        clips = [path for path in self.root.glob("*/*.wav") if path.parent.name != NOISE_DIR]
        files = sorted(path.relative_to(self.root).as_posix() for path in clips)
        split_of = {}
        for split, list_name in SPLIT_LISTS.items():
            path = self.root / list_name
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found: expected the Speech Commands v0.02 layout "
                    f"(<word>/<file>.wav, {', '.join(SPLIT_LISTS.values())}, {NOISE_DIR}/)"
                )
            listed = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            missing = sorted(set(listed) - set(files))
            if missing:
                raise FileNotFoundError(
                    f"{path}: {len(missing)} listed file(s) are not in the folder, e.g. {missing[0]}"
                )
            split_of.update(dict.fromkeys(listed, split))
        table = pd.DataFrame({FILE_COLUMN: files, TARGET_COLUMN: [name.split("/")[0] for name in files]})
        table["split"] = [split_of.get(name, "train") for name in files]
        return self.audio_check.usable(table, self.audio_dir)

    def validation_name(self) -> str:
        return f"the official validation list ({SPLIT_LISTS['val']})"

    def test_name(self) -> str:
        return f"the official test list ({SPLIT_LISTS['test']})" + (" as 12 classes, with _silence_ clips" if self.task == 12 else "")


class SpeechCommandsDataModule(SpeechDataModule):
    """The official train/validation/test split of a Speech Commands v0.02 folder; the keyword
    arguments are SpeechDataModule's (task, batch size, loaders, cache, seed)."""

    CLIP_TABLE = SpeechCommandsClips

    def __init__(self, root: str | Path, audio_dir: str = "", **kwargs) -> None:
        super().__init__(root, audio_dir=audio_dir, **kwargs)  # the word folders are in the root

    def predict_table(self) -> pd.DataFrame:
        """The official test split's clips."""
        self.setup()
        return self.table[self.table.split == "test"][[FILE_COLUMN, TARGET_COLUMN]]
