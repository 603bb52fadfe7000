"""What measurably pays on a CPU and nowhere else, in one place, switched on only for CPU runs."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from speechcls.allocator import keep_freed_memory
from speechcls.models.small_maps import train_small_maps_by_matrix_products


class CPUTuning(Callback):
    """When the trainer runs on a CPU: glibc keeps freed memory for reuse (`speechcls.allocator`: the
    large temporaries of every batch stop costing page faults), and for fitting, the network's
    convolutions over tiny maps train as matrix products (`speechcls.models.small_maps`: oneDNN's weight
    gradient there is slow). The network and its checkpoints stay the plain ones; a GPU run or a loaded
    checkpoint on a GPU is untouched. docs/benchmarks.md has the measurements.
    """

    def __init__(self, reuse_freed_memory: bool = True, small_map_convolutions: bool = True) -> None:
        self.reuse_freed_memory = reuse_freed_memory
        self.small_map_convolutions = small_map_convolutions

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type != "cpu":
            return
        if self.reuse_freed_memory:
            keep_freed_memory()
        if stage == "fit" and self.small_map_convolutions:
            train_small_maps_by_matrix_products(pl_module.net)
