"""A whole split held on the training device as int16, batches drawn there: no CPU worker in the loop."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from speechcls.audio import random_starts
from speechcls.data.cache import WaveCache, int16_windows


class DeviceBatches:
    """Iterable of (waveforms (batch, length) float32, labels) on `device`, a drop-in for a DataLoader.

    Training takes each epoch's order from `sampler` (the one a DataLoader over the split would use, so
    one seed gives the same epochs on either path: a shuffle, or `SpeechDataModule`'s balanced draws) and
    places each clip at a random offset (`speechcls.audio.random_starts`, as decoding does); evaluation
    yields the cache's evaluation windows in file order, the same batches as a DataLoader over the cached
    dataset. With several processes each takes every `world_size`-th item of the order, starting at `rank`.
    """

    def __init__(
        self,
        cache: WaveCache,
        labels: Sequence[int],
        batch_size: int,
        length: int,
        sampler: Sampler[int] | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        device = torch.device(device)
        # On the CPU this stays a view of the memory map; on a GPU it is one copy of the split.
        self.samples = torch.from_numpy(cache.samples).to(device)
        self.offsets, self.lengths, self.starts = (
            column.to(device) for column in (cache.offsets, cache.lengths, cache.evaluation_starts)
        )
        self.labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        # Not `sampler`: Lightning would take this for a DataLoader and re-create it.
        self.order_sampler = sampler
        self.train = sampler is not None
        self.batch_size = batch_size
        self.length = length
        # Every process draws the same order (the sampler's); placements are each process's own.
        self.placement_generator = torch.Generator(device=device).manual_seed(seed + 1 + rank)
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        count = len(self.order_sampler) if self.train else len(self.labels)
        return math.ceil(len(range(self.rank, count, self.world_size)) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.labels.device
        if self.train:
            order = torch.as_tensor(list(self.order_sampler), dtype=torch.long, device=device)
        else:
            order = torch.arange(len(self.labels), device=device)
        for batch in order[self.rank :: self.world_size].split(self.batch_size):
            if self.train:
                starts = random_starts(self.lengths[batch], self.length, self.placement_generator)
            else:
                starts = self.starts[batch]
            windows = int16_windows(self.samples, self.offsets[batch], self.lengths[batch], starts, self.length)
            yield windows, self.labels[batch]
