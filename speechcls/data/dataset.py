"""Fixed-length waveform items: the cheap CPU part of the data path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE, fix_length, random_starts, read_audio
from speechcls.data.cache import WaveCache

UNLABELLED = -1


class WaveformDataset(Dataset):
    """(waveform of `length` samples, class index or -1) for each file.

    Random placement only when `train`; otherwise the evaluation window (both `speechcls.audio`'s rule).
    The waveforms come from decoding the files, or from `cache` (a `WaveCache` of the same files, in order).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int] | None = None,
        train: bool = False,
        sample_rate: int = SAMPLE_RATE,
        length: int = CLIP_SAMPLES,
        cache: WaveCache | None = None,
    ) -> None:
        if labels is not None and len(labels) != len(paths):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = [Path(p) for p in paths]
        self.labels = list(labels) if labels is not None else [UNLABELLED] * len(self.paths)
        self.train = train
        self.sample_rate = sample_rate
        self.length = length
        self.cache = cache

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.cache is None:
            wave = fix_length(read_audio(self.paths[index], self.sample_rate), self.length, random=self.train)
            return wave, self.labels[index]
        clip = torch.tensor([index])
        if self.train:
            starts = random_starts(self.cache.lengths[clip], self.length)
        else:  # chosen once, when the cache was built
            starts = self.cache.evaluation_starts[clip]
        return self.cache.windows(clip, starts, self.length)[0], self.labels[index]
