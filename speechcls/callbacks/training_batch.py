"""The first training batch exactly as the network receives it, augmentation included."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from speechcls.callbacks.tensorboard import current_step, log_spectrograms, tensorboard_writer


class TrainingBatch(Callback):
    """`train/batch_spectrograms`: the first `num_examples` inputs of the run's first training step.

    A forward pre-hook on `pl_module.net` captures its input, so whatever `training_step` does to the
    features before the network (augmentation) is what the image shows, without recomputing
    anything or drawing extra random numbers.
    """

    def __init__(self, num_examples: int = 8) -> None:
        self.num_examples = num_examples
        self.hook = None
        self.inputs: torch.Tensor | None = None
        self.logged = False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        if not self.logged and self.hook is None and tensorboard_writer(trainer) is not None:
            self.hook = pl_module.net.register_forward_pre_hook(self._capture)

    def _capture(self, net: torch.nn.Module, args: tuple) -> None:
        self.inputs = args[0][: self.num_examples].detach().cpu()
        self.hook.remove()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.hook is None or self.inputs is None:
            return
        titles = [pl_module.classes[t] for t in batch[1][: self.num_examples].tolist()]
        writer, step = tensorboard_writer(trainer), current_step(trainer)
        log_spectrograms(writer, "train/batch_spectrograms", self.inputs, titles, step)
        self.hook, self.inputs, self.logged = None, None, True
