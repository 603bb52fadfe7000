"""Validation clips to look at and listen to: a fixed set, and the epoch's worst mistakes."""

from __future__ import annotations

import heapq
import math
from operator import itemgetter

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from speechcls.audio import SAMPLE_RATE
from speechcls.callbacks.figures import spectrogram_grid
from speechcls.callbacks.tensorboard import current_step, due, log_audio, prediction_titles, tensorboard_writer


class ValidationExamples(Callback):
    """The same `num_examples` validation clips every `every_n_epochs` epochs.

    The clips are chosen once, in the first validation epoch, as they stream by: the first ones of
    each class, at most ceil(num_examples / classes) per class, so 35 classes give 8 different words.
    `val_examples/spectrograms`: their log-mels titled 'true → predicted (confidence)', wrong ones in
    red; `val_examples/audio/NN_label`: each clip, once (it never changes).
    """

    def __init__(self, num_examples: int = 8, every_n_epochs: int = 5, sample_rate: int = SAMPLE_RATE) -> None:
        self.num_examples = num_examples
        self.every_n_epochs = every_n_epochs
        self.sample_rate = sample_rate
        self.chosen: list[tuple[torch.Tensor, int]] = []
        self.waves: torch.Tensor | None = None
        self.targets: torch.Tensor | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        full = len(self.chosen) == self.num_examples
        if full or self.waves is not None or trainer.sanity_checking or tensorboard_writer(trainer) is None:
            return
        per_class = math.ceil(self.num_examples / len(pl_module.classes))
        for wave, target in zip(batch[0], batch[1].tolist()):
            taken = sum(chosen_target == target for _, chosen_target in self.chosen)
            if len(self.chosen) < self.num_examples and taken < per_class:
                self.chosen.append((wave.cpu().clone(), target))  # a copy, not a view that keeps the batch

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or trainer.sanity_checking or not self.chosen:
            return
        step = current_step(trainer)
        if self.waves is None:
            self.waves = torch.stack([wave for wave, _ in self.chosen])
            self.targets = torch.tensor([target for _, target in self.chosen])
            tags = [f"val_examples/audio/{i:02d}_{pl_module.classes[t]}" for i, t in enumerate(self.targets.tolist())]
            log_audio(writer, tags, self.waves, step, self.sample_rate)
        if not due(trainer, self.every_n_epochs):
            return
        features = pl_module.spectrogram(self.waves.to(pl_module.device))
        probabilities = pl_module.classify(features).softmax(dim=-1).cpu()
        titles, wrong = prediction_titles(pl_module.classes, self.targets, probabilities)
        writer.add_figure("val_examples/spectrograms", spectrogram_grid(features, titles, wrong), step)


class WorstMistakes(Callback):
    """Every `every_n_epochs` epochs, the `num_mistakes` wrong predictions made with the highest confidence.

    `val_mistakes/spectrograms` titled '#rank true → predicted (confidence)' and `val_mistakes/audio/rank`.
    Only the current candidates' waveforms are kept while validating. Under several processes,
    rank 0 sees its own share of the validation set.
    """

    def __init__(self, num_mistakes: int = 8, every_n_epochs: int = 5, sample_rate: int = SAMPLE_RATE) -> None:
        self.num_mistakes = num_mistakes
        self.every_n_epochs = every_n_epochs
        self.sample_rate = sample_rate
        self.active = False
        self.mistakes: list[tuple[float, torch.Tensor, int, torch.Tensor]] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.active = tensorboard_writer(trainer) is not None and due(trainer, self.every_n_epochs)
        self.mistakes = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.active:
            self.keep(batch[0], outputs, batch[1])

    def keep(self, wave: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Merge a batch's wrong predictions into the `num_mistakes` most confident ones so far."""
        probabilities = logits.float().softmax(dim=-1).cpu()
        target = target.cpu()
        wrong = probabilities.argmax(dim=-1) != target
        confidence = probabilities[wrong].max(dim=-1).values.tolist()
        found = zip(confidence, wave[wrong.to(wave.device)].cpu(), target[wrong].tolist(), probabilities[wrong])
        self.mistakes = heapq.nlargest(self.num_mistakes, [*self.mistakes, *found], key=itemgetter(0))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active or not self.mistakes:
            return
        _, waves, targets, probabilities = zip(*self.mistakes)
        waves = torch.stack(waves)
        titles, wrong = prediction_titles(pl_module.classes, torch.tensor(targets), torch.stack(probabilities))
        titles = [f"#{rank} {title}" for rank, title in enumerate(titles)]
        writer, step = tensorboard_writer(trainer), current_step(trainer)
        features = pl_module.spectrogram(waves.to(pl_module.device))
        writer.add_figure("val_mistakes/spectrograms", spectrogram_grid(features, titles, wrong), step)
        log_audio(writer, [f"val_mistakes/audio/{rank}" for rank in range(len(titles))], waves, step, self.sample_rate)
