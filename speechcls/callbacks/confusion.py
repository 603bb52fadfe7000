"""The validation confusion matrix and per-class accuracy as TensorBoard images."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback
from torchmetrics.classification import MulticlassConfusionMatrix

from speechcls.callbacks.figures import accuracy_bars, confusion_figure
from speechcls.callbacks.tensorboard import current_step, due, tensorboard_writer


class ConfusionMatrix(Callback):
    """Every `every_n_epochs` validation epochs: `val/confusion_matrix` (rows normalized to the true
    class) and `val/per_class_accuracy` (its diagonal), from the logits `validation_step` returns."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = every_n_epochs
        self.matrix: MulticlassConfusionMatrix | None = None
        self.active = False

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.active = tensorboard_writer(trainer) is not None and due(trainer, self.every_n_epochs)
        if self.active:
            matrix = MulticlassConfusionMatrix(num_classes=len(pl_module.classes), normalize="true", validate_args=False)
            self.matrix = matrix.to(pl_module.device)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.active:
            self.matrix.update(outputs, batch[1])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active:
            return
        matrix = self.matrix.compute().cpu().numpy()
        writer, step = tensorboard_writer(trainer), current_step(trainer)
        writer.add_figure("val/confusion_matrix", confusion_figure(matrix, pl_module.classes), step)
        writer.add_figure("val/per_class_accuracy", accuracy_bars(matrix.diagonal(), pl_module.classes), step)
