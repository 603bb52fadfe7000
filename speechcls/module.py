"""The LightningModule: features and network together, with loss, metrics, optimizer and scheduler.

A training step reads top to bottom: waveform augmentation -> features -> spectrogram augmentation ->
mixup -> network -> loss. Evaluation skips the augmentation.
"""

from __future__ import annotations

import inspect
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from speechcls.audio import CLIP_SAMPLES
from speechcls.augment import Augmentation
from speechcls.checkpoints import read_checkpoint
from speechcls.models.complexity import count_macs, count_parameters


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
        augment: dict[str, Any] | None = None,
        channels_last: bool = False,
        clip_samples: int = CLIP_SAMPLES,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.classes = list(classes)
        self.features = instantiate(features)
        self.net = instantiate(net, num_classes=len(self.classes))
        # NHWC convolutions: faster with oneDNN on CPUs and with tensor cores under mixed precision.
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        # Training batches only (speechcls.augment); an empty Augmentation changes nothing.
        self.augment = instantiate(augment) if augment else Augmentation()
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        metrics = MetricCollection(
            {
                # validate_args=False: the checks read values back from the device, a sync every step.
                "acc": MulticlassAccuracy(num_classes=len(self.classes), average="micro", validate_args=False),
                "f1": MulticlassF1Score(num_classes=len(self.classes), average="macro", validate_args=False),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # One default-length clip: in/out sizes in the model summary, and the graph TensorBoard draws
        # with logger.tensorboard.log_graph=true.
        self.clip_samples = clip_samples
        self.test_probabilities: list[torch.Tensor] = []  # of the last test loop, in its order
        self.example_input_array = torch.zeros(1, clip_samples)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Class scores for a batch of fixed-length waveforms (batch, samples)."""
        return self.classify(self.spectrogram(wave))

    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """The network's input features (batch, 1, n_mels, frames) of fixed-length waveforms."""
        return self.features(wave)

    def classify(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """Class scores for a batch of features (batch, 1, n_mels, frames)."""
        if self.channels_last:
            spectrogram = spectrogram.contiguous(memory_format=torch.channels_last)
        return self.net(spectrogram)

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        wave, target = batch
        if self.augment.window is not None:
            wave, target = self.augment.window(wave, target, self.classes)
        wave = self.augment.wave(wave)
        spectrogram = self.augment.spectrogram(self.spectrogram(wave))
        # Targets as distributions, which mixup blends along with the inputs.
        distribution = nn.functional.one_hot(target, len(self.classes)).float()
        if self.augment.mixup is not None:
            spectrogram, distribution = self.augment.mixup(spectrogram, distribution)
        logits = self.classify(spectrogram)
        loss = self.criterion(logits, distribution)
        self._log("train", loss, logits, target)
        # The network's input reaches callbacks' on_train_batch_end (TrainingBatch draws it).
        return {"loss": loss, "spectrogram": spectrogram.detach()}

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        wave, target = batch
        logits = self(wave)
        self._log("val", self.criterion(logits, target), logits, target)
        # The logits reach callbacks' on_validation_batch_end (confusion matrix, worst mistakes).
        return logits

    def on_test_epoch_start(self) -> None:
        self.test_probabilities.clear()

    def test_step(self, batch, batch_idx: int) -> None:
        wave, target = batch
        logits = self(wave)
        self._log("test", self.criterion(logits, target), logits, target)
        # Kept for the test split's per-condition accuracy, so nothing predicts the split twice.
        self.test_probabilities.append(logits.detach().float().softmax(dim=-1).cpu())

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self(batch[0]).softmax(dim=-1)

    def _log(self, stage: str, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(logits, target)
        # The loss is averaged over DDP ranks here; torchmetrics objects sync their own state.
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(target), sync_dist=True)
        self.log_dict(metrics, on_step=False, on_epoch=True)

    def on_fit_start(self) -> None:
        """Print and log the network's size and its multiply-accumulates per clip."""
        spectrogram = self.features(self.example_input_array.to(self.device))
        params, macs = count_parameters(self.net), count_macs(self.net, spectrogram)
        rank_zero_info(
            f"{type(self.net).__name__}: {params / 1e6:.3f} M parameters, {macs / 1e6:.1f} M multiply-accumulates "
            f"per clip (input {tuple(spectrogram.shape[1:])})"
        )
        for logger in self.loggers:
            logger.log_metrics({"model/params": params, "model/macs_per_clip": macs}, step=0)

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameter_groups())
        # A group's lr_scale (e.g. a pre-trained backbone's) multiplies the optimizer's learning rate.
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
        if not self.hparams.scheduler:
            return optimizer
        spec = dict(self.hparams.scheduler)
        build = instantiate(spec.pop("scheduler"))
        # One-cycle sets every group's peak to max_lr: one number becomes one per group, scaled alike.
        if isinstance(build.keywords.get("max_lr"), (int, float)):
            max_lr = build.keywords["max_lr"]
            build = partial(build, max_lr=[max_lr * group.get("lr_scale", 1.0) for group in optimizer.param_groups])
        # Schedules over the whole run (cosine, one-cycle) take its length in optimizer steps.
        if "total_steps" in inspect.signature(build).parameters and build.keywords.get("total_steps") is None:
            build = partial(build, total_steps=int(self.trainer.estimated_stepping_batches))
        scheduler = build(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **spec}}

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters as optimizer groups: the network's own (`net.parameter_groups()`, e.g.
        a pre-trained backbone with its lr_scale; frozen ones left out) and the rest in one group."""
        groups = [dict(group) for group in getattr(self.net, "parameter_groups", lambda: [])()]
        grouped = {id(p) for group in groups for p in group["params"]}
        rest = [p for p in self.parameters() if id(p) not in grouped and p.requires_grad]
        groups = [{**group, "params": [p for p in group["params"] if p.requires_grad]} for group in groups]
        return [group for group in [{"params": rest}, *groups] if group["params"]]


def build_module(cfg: DictConfig, classes: list[str]) -> SpeechClassifier:
    """The LightningModule from the composed config, with plain-dict sub-configs for the checkpoint."""
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    return SpeechClassifier(
        classes=classes,
        net=plain(cfg.model),
        features=plain(cfg.features),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler) or None,
        augment=plain(cfg.augment) or None,
        clip_samples=round(cfg.data.sample_rate * cfg.data.clip_seconds),
        **plain(cfg.module),
    )


def resumed_module(checkpoint: Path, classes: list[str]) -> SpeechClassifier:
    """The module as the checkpoint's run built it: a changed model, feature or optimizer config cannot
    silently alter a resumed run."""
    hparams = read_checkpoint(checkpoint)["hyper_parameters"]
    hparams.pop("gemm_small_maps", None)  # retired option of earlier checkpoints: now speechcls.callbacks.CPUTuning
    if list(hparams["classes"]) != list(classes):
        raise ValueError(
            f"{checkpoint} was trained on the classes {hparams['classes']}, the data has {classes}: resume "
            "with the data overrides of the original run (its .hydra/overrides.yaml lists them)"
        )
    return SpeechClassifier(**hparams)
