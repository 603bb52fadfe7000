"""Speech Commands v0.02 as released, with its official split, as a SpeechDataModule.

ROOT/<word>/<file>.wav            one folder per word (35 in v0.02)
ROOT/validation_list.txt          <word>/<file>.wav of the validation split, one per line
ROOT/testing_list.txt             the same for the test split; every other clip is for training
ROOT/_background_noise_/*.wav     long noise recordings, the source of the 12-class task's silence

`task=35` makes every word a class. `task=12` is the benchmark task of the data set's paper: ten words,
`_unknown_` for a seeded sample of the other words' clips and `_silence_` for 1 s slices of the
background noise. Each noise file gives each split its own stretch (the first 80 % to training, the
next 10 % to validation, the last 10 % to test), so no noise is shared across splits. The slices are
written once as ordinary 16-bit clips under `silence_dir`, so they go through the data module's
machinery (cache, loaders) like every other clip.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from speechcls.atomic import atomic_write
from speechcls.audio import read_audio
from speechcls.data.cache import cache_key
from speechcls.data.datamodule import SpeechDataModule
from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN

SPLITS = ("train", "val", "test")
SPLIT_LISTS = {"val": "validation_list.txt", "test": "testing_list.txt"}  # train: every other clip
NOISE_DIR = "_background_noise_"
TWELVE_CLASS_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
TASKS = (35, 12)
# Fractions of each noise recording that each split's silence is sliced from.
NOISE_STRETCHES = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}


class SpeechCommandsDataModule(SpeechDataModule):
    """The official train/validation/test split of a Speech Commands v0.02 folder.

    `unknown_clips` and `silence_clips` (12-class task only) map each split (train, val, test) to
    its number of `_unknown_` clips (null: all the other words' clips) and `_silence_` clips. The
    remaining keyword arguments are SpeechDataModule's (batch size, loaders, cache, seed).
    """

    def __init__(
        self,
        root: str | Path,
        task: int = 35,
        unknown_clips: Mapping[str, int | None] | None = None,
        silence_clips: Mapping[str, int] | None = None,
        silence_dir: str | Path | None = None,
        **kwargs,
    ) -> None:
        super().__init__(root, audio_dir="", **kwargs)
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task}")
        if task == 12 and any((silence_clips or {}).values()) and silence_dir is None:
            raise ValueError("the 12-class task's silence clips need a silence_dir to be written to")
        self.task = task
        self.unknown_clips = dict(unknown_clips or {})
        self.silence_clips = dict(silence_clips or {})
        self.silence_dir = Path(silence_dir) if silence_dir is not None else None
        self.table: pd.DataFrame | None = None  # every clip of the task with its split, made by setup

    def setup(self, stage: str | None = None) -> None:
        if "val" in self.splits:
            return
        table = self.table = self.audio_check.usable(self.clips(), self.audio_dir)
        if self.classes is None:
            words = sorted(table[TARGET_COLUMN].unique())
            self.classes = sorted([*TWELVE_CLASS_WORDS, UNKNOWN, SILENCE]) if self.task == 12 else words
        for split in SPLITS:
            self.splits[split] = self._dataset(table[table.split == split], train=split == "train")

    def clips(self) -> pd.DataFrame:
        """Every clip of the task: file_name (relative to the root, or absolute), target and split."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"data root {self.root} does not exist (set data.root to a Speech Commands folder)")
        clips = [path for path in self.root.glob("*/*.wav") if path.parent.name != NOISE_DIR]
        files = sorted(path.relative_to(self.root).as_posix() for path in clips)
        split_of = {}
        for split, list_name in SPLIT_LISTS.items():
            listed = _read_list(self.root / list_name)
            missing = sorted(set(listed) - set(files))
            if missing:
                raise FileNotFoundError(
                    f"{self.root / list_name}: {len(missing)} listed file(s) are not in the folder, e.g. {missing[0]}"
                )
            split_of.update(dict.fromkeys(listed, split))
        table = pd.DataFrame({FILE_COLUMN: files, TARGET_COLUMN: [name.split("/")[0] for name in files]})
        table["split"] = [split_of.get(name, "train") for name in files]
        if self.task == 35:
            return table
        table.loc[~table[TARGET_COLUMN].isin(TWELVE_CLASS_WORDS), TARGET_COLUMN] = UNKNOWN
        table = self._sample_unknown(table)
        silence = self._silence()
        if silence:
            table = pd.concat([table, pd.DataFrame(silence, columns=table.columns)], ignore_index=True)
        return table

    def _sample_unknown(self, table: pd.DataFrame) -> pd.DataFrame:
        keep = []
        for split in SPLITS:
            unknown = table[(table.split == split) & (table[TARGET_COLUMN] == UNKNOWN)]
            count = self.unknown_clips.get(split)
            if count is not None and count < len(unknown):
                unknown = unknown.sample(n=count, random_state=self.seed)
            keep += list(unknown.index)
        return table[(table[TARGET_COLUMN] != UNKNOWN) | table.index.isin(keep)]

    def _silence(self) -> list[tuple[str, str, str]]:
        """(file, target, split) rows of `silence_clips` noise slices per split, written once under `silence_dir`."""
        if not any(self.silence_clips.values()):
            return []
        recordings = sorted((self.root / NOISE_DIR).glob("*.wav"))
        if not recordings:
            raise FileNotFoundError(
                f"{self.root / NOISE_DIR}: no .wav files to slice silence from (or set data.silence_clips to 0)"
            )
        folder = self.silence_dir / f"silence-{cache_key(recordings, self.sample_rate, self.clip_samples)}"
        folder.mkdir(parents=True, exist_ok=True)
        noise = {path: read_audio(path, self.sample_rate) for path in recordings}
        rows = []
        for split_index, (split, (first, last)) in enumerate(NOISE_STRETCHES.items()):
            rng = np.random.default_rng([self.seed, split_index])
            for i in range(self.silence_clips.get(split, 0)):
                path = recordings[i % len(recordings)]
                wave = noise[path]
                low, high = int(first * len(wave)), int(last * len(wave)) - self.clip_samples
                if high < low:
                    raise ValueError(
                        f"{path}: too short to give the {split} split a {self.clip_samples} sample stretch of its own"
                    )
                start = int(rng.integers(low, high, endpoint=True))
                clip = folder / f"{split}-{path.stem}-{start}.wav"
                if not clip.is_file():
                    _write_clip(clip, wave[start : start + self.clip_samples].numpy(), self.sample_rate)
                rows.append((str(clip), SILENCE, split))
        return rows

    def test_dataloader(self):
        return self._loader(self.splits["test"])

    def predict_table(self) -> pd.DataFrame:
        """The official test split's clips."""
        self.setup()
        return self.table[self.table.split == "test"][[FILE_COLUMN, TARGET_COLUMN]]


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: expected the Speech Commands v0.02 layout "
            f"(<word>/<file>.wav, {', '.join(SPLIT_LISTS.values())}, {NOISE_DIR}/)"
        )
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _write_clip(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    """Write beside `path` and rename, so a reader never sees half a clip (DDP ranks may race)."""
    with atomic_write(path) as temporary:
        sf.write(temporary, wave, sample_rate, subtype="PCM_16", format="WAV")
