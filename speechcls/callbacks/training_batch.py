"""The first training batch exactly as the network receives it, augmentation included."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from speechcls.callbacks.figures import spectrogram_grid
from speechcls.callbacks.tensorboard import current_step, tensorboard_writer


class TrainingBatch(Callback):
    """`train/batch_spectrograms`: the first `num_examples` inputs of the run's first training step.

    The training step returns the network's input with its loss, so the image shows the features after
    augmentation without recomputing anything or drawing extra random numbers.
    """

    def __init__(self, num_examples: int = 8) -> None:
        self.num_examples = num_examples
        self.logged = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        writer = tensorboard_writer(trainer)
        if self.logged or writer is None:
            return
        titles = [pl_module.classes[t] for t in batch[1][: self.num_examples].tolist()]
        grid = spectrogram_grid(outputs["spectrogram"][: self.num_examples], titles)
        writer.add_figure("train/batch_spectrograms", grid, current_step(trainer))
        self.logged = True
