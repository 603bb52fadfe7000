"""The 12-class Speech Commands task, built the same way on every data set that has it.

Ten keywords, `_unknown_` for a seeded sample of the other words' clips in each split and `_silence_`
for 1 s slices of the long noise recordings in ROOT/_background_noise_. Each recording gives each split
its own stretch (the first 80 % to training, the next 10 % to validation, the last 10 % to test), so
no noise is shared across splits. The slices are written once as ordinary 16-bit clips under a silence
folder, so they go through the data module's machinery (cache, loaders) like every other clip.
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
from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
CLASSES = sorted([*KEYWORDS, UNKNOWN, SILENCE])
TASKS = (35, 12)
# The word a 12-class clip says (its 35-class target), kept beside the task's target: which `_unknown_`
# words a detector fires on is worth knowing.
WORD_COLUMN = "word"
# Fractions of each noise recording that each split's silence is sliced from.
NOISE_STRETCHES = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}


def check_task(task: int, silence_clips: Mapping[str, int], silence_dir: str | Path | None) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task}")
    if task == 12 and any(silence_clips.values()) and silence_dir is None:
        raise ValueError("the 12-class task's silence clips need a silence_dir to be written to")


def as_keywords(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with the 12-class task's targets (every word that is not a keyword, or silence, becomes
    `_unknown_`), each clip's word kept in `WORD_COLUMN`."""
    words = table[TARGET_COLUMN]
    return table.assign(**{WORD_COLUMN: words, TARGET_COLUMN: words.where(words.isin([*KEYWORDS, SILENCE]), UNKNOWN)})


def twelve_class_table(table: pd.DataFrame, unknown_clips: Mapping[str, int | None], seed: int) -> pd.DataFrame:
    """`table` (file_name, target, split) with other words as `_unknown_`, of which each split keeps
    `unknown_clips[split]` drawn with `seed` (null or missing: all of them)."""
    table = as_keywords(table)
    keep = []
    for split in table.split.unique():
        unknown = table[(table.split == split) & (table[TARGET_COLUMN] == UNKNOWN)]
        count = unknown_clips.get(split)
        if count is not None and count < len(unknown):
            unknown = unknown.sample(n=count, random_state=seed)
        keep += list(unknown.index)
    return table[(table[TARGET_COLUMN] != UNKNOWN) | table.index.isin(keep)]


def silence_table(
    noise_dir: Path, silence_clips: Mapping[str, int], seed: int, sample_rate: int, clip_samples: int, silence_dir: Path
) -> pd.DataFrame:
    """(file_name, target, split) rows of `silence_clips[split]` slices of the recordings in `noise_dir`,
    each from its split's stretch, written once under `silence_dir` (absolute paths)."""
    rows = []
    if any(silence_clips.values()):
        recordings = sorted(noise_dir.glob("*.wav"))
        if not recordings:
            raise FileNotFoundError(f"{noise_dir}: no .wav files to slice silence from (or set data.silence_clips to 0)")
        folder = silence_dir / f"silence-{cache_key(recordings, sample_rate, clip_samples)}"
        folder.mkdir(parents=True, exist_ok=True)
        noise = {path: read_audio(path, sample_rate) for path in recordings}
        for split_index, (split, (first, last)) in enumerate(NOISE_STRETCHES.items()):
            rng = np.random.default_rng([seed, split_index])
            for i in range(silence_clips.get(split, 0)):
                path = recordings[i % len(recordings)]
                wave = noise[path]
                low, high = int(first * len(wave)), int(last * len(wave)) - clip_samples
                if high < low:
                    raise ValueError(f"{path}: too short to give the {split} split a {clip_samples} sample stretch of its own")
                start = int(rng.integers(low, high, endpoint=True))
                clip = folder / f"{split}-{path.stem}-{start}.wav"
                if not clip.is_file():
                    write_clip(clip, wave[start : start + clip_samples].numpy(), sample_rate)
                rows.append((str(clip.absolute()), SILENCE, split))
    return pd.DataFrame(rows, columns=[FILE_COLUMN, TARGET_COLUMN, "split"])


def write_clip(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    """Write beside `path` and rename, so a reader never sees half a clip (DDP ranks may race)."""
    with atomic_write(path) as temporary:
        sf.write(temporary, wave, sample_rate, subtype="PCM_16", format="WAV")
