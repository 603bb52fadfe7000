"""A trained classifier at work, for every entry point that runs one: loaded from a checkpoint or an
exported model, and its class probabilities over a loader (with optional test-time shifts)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from speechcls.audio import shift
from speechcls.checkpoints import resolve_checkpoint
from speechcls.config import instantiate_all
from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN
from speechcls.module import SpeechClassifier
from speechcls.run_record import OOF_FILE
from speechcls.submission import write_csv_atomically


def load_classifier(path: str | Path, channels_last: bool = False) -> SpeechClassifier:
    """The classifier of a checkpoint file, on the CPU (the trainer moves it to its device).

    `channels_last` replaces the training run's choice: NHWC convolutions are faster for inference
    with oneDNN on CPUs (and with tensor cores under mixed precision), whatever training used.
    """
    print(f"checkpoint: {path}")
    return SpeechClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True, channels_last=channels_last)


def make_trainer(cfg: DictConfig) -> L.Trainer:
    """A trainer for inference only: the configured device and precision, no logger."""
    return instantiate(cfg.trainer, logger=False, callbacks=instantiate_all(cfg.callbacks))


class ShiftAveraged(L.LightningModule):
    """Test-time augmentation: class probabilities averaged over time-shifted copies of each clip.

    The copies go through the classifier as one batch. Training places short clips at random
    offsets, so shifted clips are inputs the model has seen the like of.
    """

    def __init__(self, classifier: SpeechClassifier, shifts: Sequence[int]) -> None:
        super().__init__()
        self.classifier = classifier
        self.shifts = [int(s) for s in shifts]

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        wave = batch[0]
        copies = torch.cat([shift(wave, s) for s in self.shifts])
        probabilities = self.classifier(copies).softmax(dim=-1)
        return probabilities.view(len(self.shifts), len(wave), -1).mean(0)


def predict_probabilities(
    classifier: SpeechClassifier,
    loader: DataLoader,
    trainer: L.Trainer,
    tta_shifts: Sequence[int] | None = None,
) -> torch.Tensor:
    """Class probabilities (clips, classes) on the CPU, in the loader's order."""
    module = ShiftAveraged(classifier, tta_shifts) if tta_shifts else classifier
    return torch.cat(trainer.predict(module, dataloaders=loader)).float().cpu()


def load_exported(path: str | Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """An exported model as a function of waveform batches (batch, samples) -> scores, loaded once
    (ONNX through onnxruntime, TorchScript through torch.jit)."""
    if str(path).endswith(".onnx"):
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda wave: torch.from_numpy(session.run(None, {"waveform": wave.numpy()})[0])
    return torch.jit.load(str(path))


def model_file(spec: str | Path, runs_dir: str | Path) -> Path:
    """The file of a model spec: an exported model.onnx as it is, else the checkpoint `spec` names."""
    return Path(spec) if str(spec).endswith(".onnx") else resolve_checkpoint(spec, runs_dir)


def load_model(path: Path, channels_last: bool = True) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[str]]:
    """The classifier (waveforms -> scores) of a `model_file` and its classes: an exported model.onnx
    (labels.txt beside it), or a checkpoint."""
    if path.suffix == ".onnx":
        labels = path.with_name("labels.txt")
        if not labels.is_file():
            raise FileNotFoundError(f"{labels}: the exported model's classes, written by speechcls.export, not found")
        return load_exported(path), labels.read_text().split()
    classifier = load_classifier(path, channels_last).eval()
    return classifier, classifier.classes


def load_ensemble(paths: Sequence[str | Path], channels_last: bool = False) -> list[SpeechClassifier]:
    """The classifiers of `paths` (one, or the members of an ensemble), which must share their classes."""
    members = [load_classifier(path, channels_last) for path in paths]
    for path, member in zip(paths, members):
        if member.classes != members[0].classes:
            raise ValueError(f"{path}: classes {member.classes} differ from {paths[0]}'s {members[0].classes}")
    return members


def ensemble_probabilities(
    members: Sequence[SpeechClassifier], loader: DataLoader, trainer: L.Trainer, tta_shifts: Sequence[int] | None = None
) -> torch.Tensor:
    """The members' class probabilities (clips, classes), averaged: an ensemble's prediction."""
    return torch.stack([predict_probabilities(member, loader, trainer, tta_shifts) for member in members]).mean(0)


def probability_table(probabilities: torch.Tensor, classes: Sequence[str], files: Sequence[str]) -> pd.DataFrame:
    """One row a clip: its file and a column of probability per class (rounded to 6 decimals)."""
    table = pd.DataFrame(probabilities.float().cpu().numpy(), columns=list(classes)).round(6)
    table.insert(0, FILE_COLUMN, list(files))
    return table


def write_out_of_fold(trainer: L.Trainer, module: SpeechClassifier, datamodule, best_path: str, run_dir: Path) -> None:
    """The held-out fold's class probabilities by the run's best weights, one row a clip (OOF_FILE): a
    sweep over every fold predicts each clip of train.csv once, by the model that never trained on it."""
    validation = datamodule.splits["val"]
    loader = DataLoader(validation, batch_size=datamodule.batch_size)  # file order, whatever data.on_device
    predicted = trainer.predict(module, dataloaders=loader, ckpt_path=best_path or None, weights_only=True)
    if not trainer.is_global_zero or predicted is None:
        return
    table = probability_table(torch.cat(predicted), datamodule.classes, datamodule.file_names(validation))
    table.insert(1, TARGET_COLUMN, [datamodule.classes[label] for label in validation.labels])
    table.insert(2, "fold", datamodule.validation.fold)
    write_csv_atomically(table, run_dir / OOF_FILE)
