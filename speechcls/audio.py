"""Audio I/O and fixed-length clips: load, downmix, resample, pad/trim.

Everything the data path does to a file before it becomes a fixed-length 16 kHz waveform lives here,
with the constants named once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16_000
CLIP_SECONDS = 1.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
# int16 PCM as float: x / 32768, as soundfile reads it.
FULL_SCALE = 32768.0


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the problem."""


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Decode a file to a mono float32 waveform at `sample_rate` (1-D tensor in [-1, 1])."""
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"{path}: cannot decode audio ({error})") from error
    return _mono(data, file_rate, sample_rate, path)


def read_audio_blocks(path: str | Path, block_seconds: float = 60.0, sample_rate: int = SAMPLE_RATE) -> Iterator[torch.Tensor]:
    """`read_audio(path)` as consecutive pieces of about `block_seconds`, never the whole file in memory.

    Their concatenation equals `read_audio(path)` up to float rounding: each piece is decoded with a
    margin of the neighbouring samples, so resampling sees the same context at the pieces' edges.
    """
    try:
        with sf.SoundFile(str(path)) as file:
            file_rate, frames = file.samplerate, file.frames
            # Piece edges on multiples of the rates' ratio: an integer sample at both rates.
            step = file_rate // math.gcd(file_rate, sample_rate)
            block = max(1, round(block_seconds * file_rate / step)) * step
            margin = 0 if file_rate == sample_rate else -(-file_rate // (10 * step)) * step  # >= 0.1 s
            for position in range(0, frames, block):
                first = max(0, position - margin)
                file.seek(first)
                data = file.read(min(frames, position + block + margin) - first, dtype="float32", always_2d=True)
                wave = _mono(data, file_rate, sample_rate, path)
                skip = (position - first) * sample_rate // file_rate
                length = (min(frames, position + block) - position) * sample_rate // file_rate
                last = position + block >= frames
                yield wave[skip:] if last else wave[skip : skip + length]
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"{path}: cannot decode audio ({error})") from error


def _mono(data: np.ndarray, file_rate: int, sample_rate: int, path: str | Path) -> torch.Tensor:
    """Samples (frames, channels) at `file_rate` as one mono channel at `sample_rate`."""
    # In NumPy: on a 1 s clip torch's fixed cost per operation outweighs the work.
    samples = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    wave = torch.from_numpy(np.ascontiguousarray(samples))
    if file_rate != sample_rate:
        # Resampling rings past full scale near loud edges: clip to [-1, 1] as the file formats and
        # the int16 cache hold it, so that decoding and the cache agree.
        wave = AF.resample(wave, file_rate, sample_rate).clamp_(-1.0, 1.0)
    return wave


def evaluation_start(wave: torch.Tensor, length: int) -> int:
    """Start of a clip's deterministic `length`-sample window: a short clip centred (a negative start is
    left zero padding), a long one's window with the most energy, where the speech is."""
    excess = wave.shape[-1] - length
    if excess > 0:
        return loudest_window_start(wave, length)
    return -(-excess // 2)


def loudest_window_start(wave: torch.Tensor, length: int) -> int:
    """Start of the `length`-sample window with the highest energy (ties: the earliest)."""
    energy = wave.double().pow(2)
    cumulative = torch.cat([energy.new_zeros(1), energy.cumsum(0)])
    window_energy = cumulative[length:] - cumulative[:-length]
    return int(window_energy.argmax())


def random_starts(clip_lengths: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training placements of clips of `clip_lengths` samples: uniform over every start from which a
    `length`-sample window still holds all of a short clip or lies wholly inside a long one."""
    excess = clip_lengths - length
    low, high = excess.clamp(max=0), excess.clamp(min=0)
    uniform = torch.rand(clip_lengths.shape, generator=generator, device=clip_lengths.device)
    return low + (uniform * (high - low + 1)).long().clamp(max=high - low)


def crop_windows(
    samples: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor, starts: torch.Tensor, length: int
) -> torch.Tensor:
    """Windows (clips, `length`) of clips stored back to back in the 1-D `samples`: row i holds clip i
    (`lengths[i]` samples from `offsets[i]`) from its sample `starts[i]` on, zero outside the clip.

    `samples` must extend `length` samples beyond every window (zeros around the clips, or neighbours,
    which are masked): the rows are one gather from a strided view, for a batch on any device.
    """
    rows = samples.unfold(0, length, 1).index_select(0, offsets + starts)
    if rows.device.type != "cpu":
        return _zero_outside(rows, starts, lengths)
    # On a CPU, mask only the rows that reach past their clip (none when every clip lasts 1 s): masking
    # the whole batch costs more than the gather. On a GPU, finding them would wait for the device.
    partial = ((starts < 0) | (starts + length > lengths)).nonzero().squeeze(1)
    rows[partial] = _zero_outside(rows[partial], starts[partial], lengths[partial])
    return rows


def _zero_outside(rows: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(rows.shape[-1], device=rows.device)
    return rows.masked_fill_((positions < -starts[:, None]) | (positions >= (lengths - starts)[:, None]), 0)


def window(wave: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """`length` samples of a 1-D waveform from sample `start` (negative or past the end: zeros there)."""
    padded = torch.nn.functional.pad(wave, (length, length))
    index = torch.tensor([length]), torch.tensor([wave.shape[-1]]), torch.tensor([start])
    return crop_windows(padded, *index, length)[0]


def fix_length(wave: torch.Tensor, length: int, random: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """A 1-D waveform as `length` samples: its evaluation window, or with `random` a training placement."""
    if random:
        start = int(random_starts(torch.tensor([wave.shape[-1]]), length, generator)[0])
    else:
        start = evaluation_start(wave, length)
    return window(wave, start, length)


def shift(waves: torch.Tensor, samples: torch.Tensor | int) -> torch.Tensor:
    """Fixed-length waveforms (batch, length) delayed by `samples` (one per row, or one for all;
    advanced if negative), zero-filled: each row's window from start -samples."""
    batch, length = waves.shape
    delays = torch.as_tensor(samples, device=waves.device).expand(batch).clamp(-length, length)
    # Each row with `length` zeros either side is the clip: every window lies inside it, nothing to mask.
    padded = torch.nn.functional.pad(waves, (length, length))
    offsets = torch.arange(batch, device=waves.device) * padded.shape[-1]
    return crop_windows(padded.flatten(), offsets, torch.full_like(offsets, padded.shape[-1]), length - delays, length)


def load_clip(path: str | Path, sample_rate: int = SAMPLE_RATE, length: int = CLIP_SAMPLES) -> torch.Tensor:
    """A file as a deterministic fixed-length clip, the way validation and prediction see it."""
    return fix_length(read_audio(path, sample_rate), length)


def pcm16(wave: torch.Tensor, headroom: bool = False) -> torch.Tensor:
    """Float samples as int16 PCM: x * 32768 rounded and clipped. `headroom`: scaled by 32767 instead,
    so a full-scale peak is kept exactly (the synthetic sets are written so; the cache reads either)."""
    scale = FULL_SCALE - 1 if headroom else FULL_SCALE
    return (wave * scale).round().clamp(-FULL_SCALE, FULL_SCALE - 1).to(torch.int16)


def coloured(white: torch.Tensor, exponent: torch.Tensor | float) -> torch.Tensor:
    """White noise (..., samples) shaped to a 1/f**exponent power spectrum (0 white, 1 pink, 2 brown);
    `exponent` broadcasts against (..., 1). The synthetic set's noise comes from here too."""
    length = white.shape[-1]
    frequencies = torch.fft.rfftfreq(length, device=white.device, dtype=white.dtype)
    frequencies[0] = frequencies[1]  # keep DC finite
    # f ** (-exponent / 2) as an exp of a product: a per-row power is much slower on a CPU.
    return torch.fft.irfft(torch.fft.rfft(white) * torch.exp(frequencies.log() * (-torch.as_tensor(exponent) / 2)), length)
