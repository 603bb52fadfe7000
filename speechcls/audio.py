"""Audio I/O and fixed-length clips: load, downmix, resample, pad/trim.

Everything the data path does to a file before it becomes a fixed-length 16 kHz waveform lives here,
with the constants named once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16_000
CLIP_SECONDS = 1.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the problem."""


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Decode a file to a mono float32 waveform at `sample_rate` (1-D tensor in [-1, 1])."""
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"{path}: cannot decode audio ({error})") from error
    # In NumPy: on a 1 s clip torch's per-op costs tripled the time of decoding (0.63 vs 0.20 ms a clip).
    samples = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    wave = torch.from_numpy(np.ascontiguousarray(samples))
    if file_rate != sample_rate:
        wave = AF.resample(wave, file_rate, sample_rate)
    return wave


def fix_length(wave: torch.Tensor, length: int, random: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad or trim the last dimension to `length` samples.

    Training (`random=True`) places the clip at a random offset. Otherwise the result is
    deterministic: a short clip is centred, a long one keeps the window with the most energy, where
    the speech is, rather than blindly its centre.
    """
    excess = wave.shape[-1] - length
    if excess == 0:
        return wave
    if excess > 0:
        if random:
            start = int(torch.randint(0, excess + 1, (), generator=generator))
        else:
            start = loudest_window_start(wave, length)
        return wave[..., start : start + length]
    missing = -excess
    left = int(torch.randint(0, missing + 1, (), generator=generator)) if random else missing // 2
    return torch.nn.functional.pad(wave, (left, missing - left))


def loudest_window_start(wave: torch.Tensor, length: int) -> int:
    """Start of the `length`-sample window with the highest energy (ties: the earliest)."""
    energy = wave.double().reshape(-1, wave.shape[-1]).pow(2).sum(0)
    cumulative = torch.cat([energy.new_zeros(1), energy.cumsum(0)])
    window_energy = cumulative[length:] - cumulative[:-length]
    return int(window_energy.argmax())


def load_clip(path: str | Path, sample_rate: int = SAMPLE_RATE, length: int = CLIP_SAMPLES) -> torch.Tensor:
    """A file as a deterministic fixed-length clip, the way validation and prediction see it."""
    return fix_length(read_audio(path, sample_rate), length)
