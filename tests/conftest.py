"""Shared fixtures: a tiny Kaggle-layout folder of tones and the real configs composed for tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from hypothesis import settings
from omegaconf import DictConfig

from speechcls.config import CONFIG_DIR
from speechcls.train import train

TINY_CLASSES = ["down", "go", "up"]

# CI checks the same examples every run (a failure there is reproducible); a developer's run explores.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def write_tone(path: Path, frequency: float, seconds: float, sample_rate: int, rng: np.random.Generator) -> None:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.5 * np.sin(2 * np.pi * frequency * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(path, wave.astype(np.float32), sample_rate, subtype="PCM_16")


def make_kaggle_folder(root: Path, clips_per_class: int = 10, test_clips: int = 5, seed: int = 0) -> Path:
    """Tones whose pitch gives the class, of varied lengths and sample rates, in the Kaggle layout."""
    rng = np.random.default_rng(seed)
    audio = root / "audio_files"
    audio.mkdir(parents=True)
    rows = []
    for label_index, label in enumerate(TINY_CLASSES):
        for i in range(clips_per_class):
            name = f"{label}_{i}.wav"
            rate = [16000, 22050, 8000][i % 3]
            write_tone(audio / name, 400 * (label_index + 1), rng.uniform(0.6, 1.4), rate, rng)
            rows.append((name, label))
    pd.DataFrame(rows, columns=["file_name", "target"]).to_csv(root / "train.csv", index=False)
    test_rows = []
    for i in range(test_clips):
        name = f"test_{i}.wav"
        label_index = i % len(TINY_CLASSES)
        write_tone(audio / name, 400 * (label_index + 1), 1.0, 16000, rng)
        test_rows.append((name, TINY_CLASSES[label_index]))
    answers = pd.DataFrame(test_rows, columns=["file_name", "target"])
    answers.to_csv(root / "test_labels.csv", index=False)
    answers.assign(target=TINY_CLASSES[0]).to_csv(root / "sample_submission.csv", index=False)
    return root


# (sample rate, frames, channels, subtype) of the files a real download holds besides 16 kHz mono PCM_16:
# resampled to 1 s minus and plus one sample, a quarter second, several seconds, odd rates, stereo and
# more channels, float, 24- and 8-bit, u-law.
MESSY_FILES = [
    (32000, 31997, 1, "PCM_16"),  # 15,999 samples at 16 kHz
    (44100, 44101, 2, "FLOAT"),  # 16,001
    (48000, 47995, 3, "DOUBLE"),  # 15,999
    (11025, 11024, 6, "PCM_U8"),  # 15,999
    (22050, 3 * 22050, 1, "PCM_24"),
    (16000, 4000, 1, "PCM_16"),
    (16000, 15999, 2, "PCM_16"),
    (8000, 8000, 1, "ULAW"),
]


def write_messy_tone(path: Path, frequency: float, spec: tuple[int, int, int, str], rng: np.random.Generator) -> None:
    rate, frames, channels, subtype = spec
    t = np.arange(frames) / rate
    tone = 0.4 * np.sin(2 * np.pi * frequency * t)
    wave = tone[:, None] * rng.uniform(0.5, 1.0, channels) + 0.02 * rng.standard_normal((frames, channels))
    sf.write(path, wave.astype(np.float64 if subtype == "DOUBLE" else np.float32), rate, subtype=subtype)


def make_messy_kaggle_folder(root: Path, seed: int = 0) -> Path:
    """A Kaggle-layout folder whose every class and the test files hold each of MESSY_FILES."""
    rng = np.random.default_rng(seed)
    audio = root / "audio_files"
    audio.mkdir(parents=True)
    rows, test_rows = [], []
    for label_index, label in enumerate(TINY_CLASSES):
        for i, spec in enumerate(MESSY_FILES):
            name = f"{label}_{i}.wav"
            write_messy_tone(audio / name, 400 * (label_index + 1), spec, rng)
            rows.append((name, label))
    for i, spec in enumerate(MESSY_FILES):
        name, label_index = f"test_{i}.wav", i % len(TINY_CLASSES)
        write_messy_tone(audio / name, 400 * (label_index + 1), spec, rng)
        test_rows.append((name, TINY_CLASSES[label_index]))
    pd.DataFrame(rows, columns=["file_name", "target"]).to_csv(root / "train.csv", index=False)
    answers = pd.DataFrame(test_rows, columns=["file_name", "target"])
    answers.to_csv(root / "test_labels.csv", index=False)
    answers.iloc[::-1].assign(target=TINY_CLASSES[0]).to_csv(root / "sample_submission.csv", index=False)
    return root


@pytest.fixture(scope="session")
def kaggle_root(tmp_path_factory) -> Path:
    return make_kaggle_folder(tmp_path_factory.mktemp("kaggle"))


def compose_train(tmp_path: Path, *overrides: str, config_name: str = "train") -> DictConfig:
    """The real composed training config on the tiny folder, writing only under tmp_path."""
    base = [
        f"paths.root_dir={tmp_path}",
        f"paths.output_dir={tmp_path / 'run'}",
        "data.num_workers=0",
        "data.batch_size=8",
        "callbacks.progress_bar=null",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=[*base, *overrides])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, kaggle_root) -> Path:
    """The run directory (checkpoints/, .ckpt of the 3 TINY_CLASSES) of a few-second training run."""
    tmp_path = tmp_path_factory.mktemp("tiny_run")
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "trainer.max_epochs=3", "optimizer.lr=1e-3",
        "logger=csv", "test=false",
    )
    train(cfg)
    return tmp_path / "run"


def run_train(
    tmp_path: Path, kaggle_root: Path, *overrides: str, multirun: bool = False
) -> subprocess.CompletedProcess:
    """`python -m speechcls.train` on the tiny folder in a subprocess (a multirun or DDP needs the real
    entry point), writing only under tmp_path; its output is captured."""
    base = [
        "data=kaggle", f"data.root={kaggle_root}", "data.num_workers=0", "data.batch_size=8",
        "callbacks.progress_bar=null", f"paths.root_dir={tmp_path}",
    ]  # fmt: skip
    command = [sys.executable, "-m", "speechcls.train", *(["--multirun"] if multirun else []), *base, *overrides]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)


def setup_datamodule(tmp_path: Path, data: str, root: Path, *overrides: str):
    """The data module of config `data=<data>` on `root`, set up for fitting."""
    cfg = compose_train(tmp_path, f"data={data}", f"data.root={root}", *overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule
