"""A whole split held on the training device as int16, batches drawn there: no CPU worker in the loop."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from speechcls.audio import random_starts
from speechcls.data.cache import WaveCache, int16_windows


class DeviceBatches:
    """Iterable of (waveforms (batch, length) float32, labels) on `device`, a drop-in for a DataLoader.

    Training shuffles every epoch and places each clip at a random offset (`speechcls.audio.random_starts`,
    as decoding does); evaluation yields the cache's evaluation windows in file order,
    the same batches as a DataLoader over the cached dataset. With several processes each takes every
    `world_size`-th item of the order, starting at `rank`. `weights` (one per clip) makes a training epoch
    `draws` clips (default: as many as the split holds) drawn with replacement in proportion to them
    (`SpeechDataModule`'s `balance_by`).
    """

    def __init__(
        self,
        cache: WaveCache,
        labels: Sequence[int],
        batch_size: int,
        length: int,
        train: bool,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: Sequence[float] | None = None,
        draws: int | None = None,
    ) -> None:
        device = torch.device(device)
        # On the CPU this stays a view of the memory map; on a GPU it is one copy of the split.
        self.samples = torch.from_numpy(cache.samples).to(device)
        self.offsets, self.lengths, self.starts = (
            column.to(device) for column in (cache.offsets, cache.lengths, cache.evaluation_starts)
        )
        self.labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float, device=device)
        self.draws = len(self.labels) if weights is None or draws is None else draws
        self.batch_size = batch_size
        self.length = length
        self.train = train
        # Every process draws the same order; placements are each process's own.
        self.order_generator = torch.Generator(device=device).manual_seed(seed)
        self.placement_generator = torch.Generator(device=device).manual_seed(seed + 1 + rank)
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        count = self.draws if self.train else len(self.labels)
        return math.ceil(len(range(self.rank, count, self.world_size)) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count, device = len(self.labels), self.labels.device
        if self.train and self.weights is not None:
            order = torch.multinomial(self.weights, self.draws, replacement=True, generator=self.order_generator)
        elif self.train:
            order = torch.randperm(count, generator=self.order_generator, device=device)
        else:
            order = torch.arange(count, device=device)
        for batch in order[self.rank :: self.world_size].split(self.batch_size):
            if self.train:
                starts = random_starts(self.lengths[batch], self.length, self.placement_generator)
            else:
                starts = self.starts[batch]
            windows = int16_windows(self.samples, self.offsets[batch], self.lengths[batch], starts, self.length)
            yield windows, self.labels[batch]
