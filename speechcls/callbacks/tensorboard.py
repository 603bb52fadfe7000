"""What the inspection callbacks share: the TensorBoard writer, when to log, and logging clips."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard import SummaryWriter


def tensorboard_writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The SummaryWriter of the run's TensorBoard logger; None (callbacks do nothing) without one.

    On ranks other than 0 Lightning returns a writer whose methods do nothing.
    """
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def current_step(trainer: L.Trainer) -> int:
    """The step Lightning files this moment's scalars under (the last optimizer step's index), so that
    images sit beside the epoch's curves."""
    return max(trainer.global_step - 1, 0)


def due(trainer: L.Trainer, every_n_epochs: int) -> bool:
    """Epochs 0, N, 2N, ... and the last one; never the sanity check."""
    epoch = trainer.current_epoch
    return not trainer.sanity_checking and (epoch % every_n_epochs == 0 or epoch == trainer.max_epochs - 1)


def log_audio(writer: SummaryWriter, tags: Sequence[str], waves: torch.Tensor, step: int, sample_rate: int) -> None:
    for tag, wave in zip(tags, waves.float().cpu()):
        writer.add_audio(tag, wave.unsqueeze(0), step, sample_rate=sample_rate)


def prediction_titles(
    classes: Sequence[str], target: torch.Tensor, probabilities: torch.Tensor
) -> tuple[list[str], list[bool]]:
    """'true → predicted (confidence)' for each clip, and which predictions are wrong."""
    confidence, predicted = probabilities.max(dim=-1)
    titles = [
        f"{classes[t]} → {classes[p]} ({c:.2f})"
        for t, p, c in zip(target.tolist(), predicted.tolist(), confidence.tolist())
    ]
    return titles, (predicted != target).tolist()
