"""The tutorial's way of preparing items and predicting, kept as the baseline ours is measured against.

The tutorial decodes every item with soundfile and builds a new MelSpectrogram and AmplitudeToDB for it,
on every epoch, in the main process; it predicts one file at a time, with gradients on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import soundfile as sf
import torch
import torchaudio.functional as AF
from hydra.utils import get_class
from torch import nn
from torch.utils.data import DataLoader, Dataset

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE
from speechcls.data.dataset import WaveformDataset
from speechcls.module import SpeechClassifier
from speechcls.predict import load_classifier, predict_probabilities


def tutorial_clip(path: str | Path, sample_rate: int = SAMPLE_RATE, length: int = CLIP_SAMPLES) -> torch.Tensor:
    """Decode, downmix, resample, then trim or zero-pad the end to `length` samples."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1))
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    return torch.nn.functional.pad(wave[:length], (0, max(0, length - len(wave))))


def feature_factory(features: dict) -> Callable[[], nn.Module]:
    """Builds a new feature module (MelSpectrogram + AmplitudeToDB) from a `_target_` spec per call,
    by a plain constructor call as the tutorial did: Hydra's instantiate would add its own overhead."""
    params = {key: value for key, value in features.items() if key != "_target_"}
    feature_class = get_class(features["_target_"])
    return lambda: feature_class(**params)


class TutorialDataset(Dataset):
    """(log-mel (1, n_mels, frames), label) items computed one at a time, new feature objects each."""

    def __init__(self, paths: Sequence[str | Path], labels: Sequence[int], features: dict) -> None:
        self.paths = list(paths)
        self.labels = list(labels)
        self.new_features = feature_factory(features)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.new_features()(tutorial_clip(self.paths[index])[None])[0], self.labels[index]


def predict_per_file(
    model_or_checkpoint: SpeechClassifier | str | Path,
    paths: Sequence[str | Path],
    device: str = "cpu",
    sample_rate: int = SAMPLE_RATE,
    length: int = CLIP_SAMPLES,
) -> list[int]:
    """Class indices, the tutorial's way: file by file, new feature objects each time, autograd on.

    The network is put in eval mode (the tutorial's train mode would update and use batch norm
    statistics of single clips, changing the checkpoint's predictions).
    """
    module = model_or_checkpoint
    if not isinstance(module, SpeechClassifier):
        module = load_classifier(model_or_checkpoint)
    module.to(device).eval()
    new_features = feature_factory(module.hparams.features)
    predictions = []
    for path in paths:
        wave = tutorial_clip(path, sample_rate, length)
        features = new_features().to(device)  # MelSpectrogram + AmplitudeToDB, anew
        logits = module.net(features(wave[None].to(device)))
        predictions.append(int(logits.argmax()))
    return predictions


def measure_predict_speedup(
    checkpoint: SpeechClassifier | str | Path,
    paths: Sequence[str | Path],
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
    warmup: int = 8,
    rounds: int = 2,
) -> dict[str, float]:
    """Clips per second of the tutorial's loop and of our batched prediction, on the same files.

    Ours is the validation data path (decode, deterministic pad/trim, batches, log-mels inside the
    model) through Lightning's predict loop under inference mode, without the waveform cache: both
    ways decode every file. Each way first runs on `warmup` files, untimed. The files are split into
    `rounds` parts timed both ways in turn, so a change of load on a shared machine hits both ways.
    A checkpoint is loaded as `speechcls.predict` loads it (channels_last) for ours, as saved for the
    tutorial's loop; a module is used as it is by both.
    """
    if isinstance(checkpoint, SpeechClassifier):
        tutorial_model = ours = checkpoint
    else:
        tutorial_model, ours = load_classifier(checkpoint), load_classifier(checkpoint, channels_last=True)
    trainer = L.Trainer(
        accelerator="cpu" if device == "cpu" else "gpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )

    def batched(files: Sequence[str | Path]) -> list[int]:
        dataset = WaveformDataset(files, sample_rate=SAMPLE_RATE, length=CLIP_SAMPLES)
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
        return predict_probabilities(ours, loader, trainer).argmax(dim=1).tolist()

    def per_file(files: Sequence[str | Path]) -> list[int]:
        return predict_per_file(tutorial_model, files, device=device)

    ways = {"tutorial": per_file, "batched": batched}
    timings = dict.fromkeys(ways, 0.0)
    predictions = {name: [] for name in ways}
    for run in ways.values():
        run(paths[:warmup])
    for part in range(rounds):
        files = paths[part * len(paths) // rounds : (part + 1) * len(paths) // rounds]
        for name, run in ways.items():
            start = time.perf_counter()  # both ways end on host-side class indices: no pending GPU work
            predictions[name] += run(files)
            timings[name] += time.perf_counter() - start
    agreement = sum(a == b for a, b in zip(predictions["tutorial"], predictions["batched"])) / len(paths)
    return {
        "clips": len(paths),
        "tutorial_clips_per_s": len(paths) / timings["tutorial"],
        "batched_clips_per_s": len(paths) / timings["batched"],
        "speedup": timings["tutorial"] / timings["batched"],
        "agreement": agreement,
    }
