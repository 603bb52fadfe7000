"""The LightningModule: features and network together, with loss, metrics, optimizer and scheduler."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score


class SpeechClassifier(L.LightningModule):
    """Waveform batches -> on-device log-mels -> network -> class scores.

    The sub-configs are plain dicts (`_target_` specs) kept in the hyperparameters, so a checkpoint
    alone rebuilds the model, and `classes` travels with it: prediction never re-derives the class
    list from data.
    """

    def __init__(
        self,
        classes: list[str],
        net: dict[str, Any],
        features: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.classes = list(classes)
        self.features = instantiate(features)
        self.net = instantiate(net, num_classes=len(self.classes))
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes=len(self.classes), average="micro"),
                "f1": MulticlassF1Score(num_classes=len(self.classes), average="macro"),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Class scores for a batch of fixed-length waveforms (batch, samples)."""
        return self.net(self.features(wave))

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        wave, target = batch
        logits = self(wave)
        loss = self.criterion(logits, target)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(logits, target)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(target))
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self(batch[0]).softmax(dim=-1)

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        spec = dict(self.hparams.scheduler)
        scheduler = instantiate(spec.pop("scheduler"))(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **spec}}
