"""A Kaggle submission from a checkpoint: `python -m speechcls.predict ckpt_path=... data.root=...`.

Clips go through the validation data path (deterministic pad/trim, log-mels on the device) in
batches under `torch.inference_mode()` (Lightning's predict loop); the class list is the checkpoint's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hydra
import lightning as L
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from speechcls.audio import shift
from speechcls.checkpoints import resolve_checkpoint
from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN, read_table
from speechcls.module import SpeechClassifier
from speechcls.submission import write_csv_atomically, write_submission
from speechcls.train import CONFIG_DIR, instantiate_all


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


def predict(cfg: DictConfig) -> Path:
    """Write the submission (and optionally the probabilities); returns the submission's path."""
    classifier = load_classifier(resolve_checkpoint(cfg.ckpt_path, cfg.runs_dir), cfg.channels_last)
    classes = classifier.classes
    # No prepare_data: prediction reads a folder, it never generates one (data.root may be Kaggle's).
    datamodule = instantiate(cfg.data, classes=classes)
    probabilities = predict_probabilities(classifier, datamodule.predict_dataloader(), make_trainer(cfg), cfg.tta_shifts)
    # The submission is checked against the sample file itself, not against what the loader made of it.
    sample = read_table(datamodule.root / datamodule.predict_csv, labelled=False)
    files = sample[FILE_COLUMN]
    predicted = [classes[i] for i in probabilities.argmax(dim=1).tolist()]
    output = write_submission(pd.DataFrame({FILE_COLUMN: files, TARGET_COLUMN: predicted}), cfg.output, sample, classes)
    print(f"submission: {output} ({len(files)} clips, {len(classes)} classes)")
    if cfg.save_probs:
        table = pd.DataFrame(probabilities.numpy(), columns=classes).round(6)
        table.insert(0, FILE_COLUMN, files)
        print(f"probabilities: {write_csv_atomically(table, output.with_name(f'{output.stem}_probs.csv'))}")
    return output


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
