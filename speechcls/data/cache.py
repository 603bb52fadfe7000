"""Decoded-waveform cache: every clip of a file list decoded once into one memory-mapped int16 array.

CACHE_DIR/waves-<key>/
    samples.int16   every clip's samples at the target rate, back to back (raw little-endian int16),
                    between two clip lengths of zeros: any window that overlaps a clip is in range
    index.npy       (clips, 3) int64: offset into samples, length, start of the evaluation window

Clips keep their native (resampled) length, so training still places a short or long clip at a random
offset exactly as when decoding; the evaluation window's start (`speechcls.audio.evaluation_start`,
negative for a short clip centred with zero padding) is computed once from the float waveform at build.
Windows are read with `speechcls.audio.crop_windows`, the one implementation of the window rule.
A clip longer than `MAX_CLIP_FACTOR` clip lengths keeps only that many samples around its loudest
window, so one long recording cannot blow up the cache.

The key hashes the file list with each file's size and modification time and the audio settings, so any
change makes a new cache. A cache is built in `waves-<key>.tmp-<pid>` and renamed when complete: a
directory under the final name is always whole. Readers open the memory map lazily and never pickle it,
so DataLoader workers share the page cache instead of copying the array.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from speechcls.audio import FULL_SCALE, crop_windows, evaluation_start, pcm16, read_audio

CACHE_FORMAT = 2
MAX_CLIP_FACTOR = 4


def cache_key(paths: Sequence[str | Path], sample_rate: int, length: int) -> str:
    """Hash of the file list (in order), each file's size and mtime, and the audio settings."""
    digest = hashlib.sha256(
        json.dumps({"format": CACHE_FORMAT, "sample_rate": sample_rate, "length": length}).encode()
    )
    for path in paths:
        path = os.path.abspath(path)
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def int16_windows(
    samples: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor, starts: torch.Tensor, length: int
) -> torch.Tensor:
    """`crop_windows` of int16 samples as float32, exactly x / 32768 (a cast and an in-place scale)."""
    return crop_windows(samples, offsets, lengths, starts, length).float().mul_(1 / FULL_SCALE)


class WaveCache:
    """A built cache: clip `i` as a float waveform of native length, or any window of it."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.index = np.load(self.directory / "index.npy")
        self.offsets, self.lengths, self.evaluation_starts = torch.from_numpy(self.index).unbind(1)
        self._samples: np.memmap | None = None

    @property
    def samples(self) -> np.memmap:
        # Copy-on-write mode: zero-copy torch.from_numpy without a read-only warning; nothing writes.
        if self._samples is None:
            self._samples = np.memmap(self.directory / "samples.int16", dtype="<i2", mode="c")
        return self._samples

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_samples": None}

    def __len__(self) -> int:
        return len(self.index)

    def wave(self, i: int) -> torch.Tensor:
        offset, length = int(self.offsets[i]), int(self.lengths[i])
        return torch.from_numpy(self.samples[offset : offset + length].astype(np.float32)) / FULL_SCALE

    def windows(self, clips: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
        """(len(clips), length): each clip's window from its sample `starts[i]` on, zero outside it."""
        samples = torch.from_numpy(self.samples)
        return int16_windows(samples, self.offsets[clips], self.lengths[clips], starts, length)

    @classmethod
    def ensure(
        cls, paths: Sequence[str | Path], cache_dir: str | Path, sample_rate: int, length: int
    ) -> WaveCache:
        """The cache of these files, built first if missing or stale."""
        directory = Path(cache_dir) / f"waves-{cache_key(paths, sample_rate, length)}"
        if not directory.is_dir():
            build(paths, directory, sample_rate, length)
        cache = cls(directory)
        if len(cache) != len(paths):
            raise RuntimeError(f"{directory}: holds {len(cache)} clips, expected {len(paths)}; delete it")
        return cache


def build(paths: Sequence[str | Path], directory: Path, sample_rate: int, length: int) -> None:
    """Decode `paths` into `directory`, atomically: a temporary sibling renamed when complete, removed
    on any error (a killed process leaves it behind under its .tmp-<pid> name, never read)."""
    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        index = np.empty((len(paths), 3), dtype=np.int64)
        guard = np.zeros(length, dtype="<i2").tobytes()
        offset = length
        with open(tmp / "samples.int16", "wb") as samples:
            samples.write(guard)
            for i, path in enumerate(tqdm(paths, desc=f"caching {directory.name}", unit="clip", leave=False)):
                wave, start = _clip_for_cache(read_audio(path, sample_rate), length)
                samples.write(pcm16(wave).numpy().astype("<i2").tobytes())
                index[i] = (offset, wave.shape[-1], start)
                offset += wave.shape[-1]
            samples.write(guard)
            samples.flush()
            os.fsync(samples.fileno())  # the data is on disk before the rename makes it the cache
        with open(tmp / "index.npy", "wb") as file:
            np.save(file, index)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.replace(tmp, directory)
        except OSError:
            if not directory.is_dir():
                raise
            shutil.rmtree(tmp)  # another process finished the same cache first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _clip_for_cache(wave: torch.Tensor, length: int) -> tuple[torch.Tensor, int]:
    """The samples to store and the evaluation start within them (a window around the loudest part
    when the clip is longer than MAX_CLIP_FACTOR clip lengths)."""
    start = evaluation_start(wave, length)
    keep = MAX_CLIP_FACTOR * length
    if wave.shape[-1] <= keep:
        return wave, start
    first = min(max(start - (keep - length) // 2, 0), wave.shape[-1] - keep)
    return wave[first : first + keep], start - first


