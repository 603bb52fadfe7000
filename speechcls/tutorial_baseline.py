"""The tutorial's way of preparing items and predicting, kept as the baseline ours is measured against.

The tutorial decodes every item with soundfile and builds a new MelSpectrogram and AmplitudeToDB for it,
on every epoch, in the main process; it predicts one file at a time, with gradients on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF
from hydra.utils import get_class
from torch import nn
from torch.utils.data import Dataset

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE
from speechcls.module import SpeechClassifier


def tutorial_clip(path: str | Path, sample_rate: int = SAMPLE_RATE, length: int = CLIP_SAMPLES) -> torch.Tensor:
    """Decode, downmix, resample, then trim or zero-pad the end to `length` samples."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1))
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    return torch.nn.functional.pad(wave[:length], (0, max(0, length - len(wave))))


def feature_factory(features: Mapping) -> Callable[[], nn.Module]:
    """Builds a new feature module (MelSpectrogram + AmplitudeToDB) from a `_target_` spec (a dict or a
    config node) per call, by a plain constructor call as the tutorial did: Hydra's instantiate would add
    its own overhead."""
    params = {key: value for key, value in features.items() if key != "_target_"}
    return partial(get_class(features["_target_"]), **params)


class TutorialDataset(Dataset):
    """(log-mel (1, n_mels, frames), label) items computed one at a time, new feature objects each."""

    def __init__(self, paths: Sequence[str | Path], labels: Sequence[int], features: Mapping) -> None:
        self.paths = list(paths)
        self.labels = list(labels)
        self.new_features = feature_factory(features)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.new_features()(tutorial_clip(self.paths[index])[None])[0], self.labels[index]


def predict_per_file(
    module: SpeechClassifier, paths: Sequence[str | Path], device: torch.device | str = "cpu"
) -> list[int]:
    """Class indices, the tutorial's way: file by file, new feature objects each time, autograd on.

    The network is put in eval mode (the tutorial's train mode would update and use batch norm
    statistics of single clips, changing the checkpoint's predictions).
    """
    module.to(device).eval()
    new_features = feature_factory(module.hparams.features)
    predictions = []
    for path in paths:
        features = new_features().to(device)  # MelSpectrogram + AmplitudeToDB, anew
        logits = module.net(features(tutorial_clip(path)[None].to(device)))
        predictions.append(int(logits.argmax()))
    return predictions
