"""Training throughput (clips per second) and epoch time as epoch scalars."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import Callback


class Throughput(Callback):
    """Logs `time/epoch_s` (training and validation) and `time/train_clips_per_s` through `pl_module.log`.

    Only a clock read and a counter per step: no device synchronisation, so the figure includes data
    loading, which is what a training epoch costs.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = self.train_end = time.perf_counter()
        self.clips = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.clips += len(batch[1])
        self.train_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        train_seconds = self.train_end - self.start
        pl_module.log("time/epoch_s", time.perf_counter() - self.start)
        if train_seconds > 0:
            pl_module.log("time/train_clips_per_s", self.clips / train_seconds)
