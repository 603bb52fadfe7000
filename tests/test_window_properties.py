"""The fixed-length window rule, for audio of any length, rate, channel count and sample format.

Every data path (decoding, the cache, on-device batches, a DataLoader with workers) must give exactly
one clip length, the decode path's evaluation window, and training windows that are windows of the
clip at an allowed placement. Hypothesis searches for files that break this and shrinks them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, RandomSampler

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE, crop_windows, load_clip, random_starts, read_audio, shift
from speechcls.data.cache import FULL_SCALE, WaveCache
from speechcls.data.dataset import WaveformDataset
from speechcls.data.device_batches import DeviceBatches

RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000]
SUBTYPES = ["PCM_16", "PCM_24", "PCM_U8", "FLOAT", "DOUBLE", "ULAW"]
ONE_STEP = 1 / FULL_SCALE  # the cache rounds float, 24-bit and resampled audio to int16


@dataclass(frozen=True)
class AudioFile:
    rate: int
    frames: int
    channels: int
    subtype: str
    seed: int

    def write(self, path: Path) -> Path:
        rng = np.random.default_rng(self.seed)
        # Noise with a louder burst somewhere: a long clip has one loudest window.
        wave = 0.1 * rng.uniform(-1, 1, (self.frames, self.channels))
        burst = int(rng.integers(0, self.frames))
        wave[burst : burst + self.rate // 4] *= 8
        sf.write(path, wave, self.rate, subtype=self.subtype)
        return path


def frames_resampling_to(samples: int, rate: int) -> int:
    """Frames at `rate` that torchaudio's resampling turns into `samples` 16 kHz samples (ceil)."""
    return samples * rate // SAMPLE_RATE


@st.composite
def audio_files(draw) -> AudioFile:
    rate = draw(st.sampled_from(RATES))
    near_a_clip = [frames_resampling_to(CLIP_SAMPLES + d, rate) for d in (-1, 0, 1)]
    frames = draw(st.one_of(st.integers(1, 8 * rate), st.sampled_from(near_a_clip)))
    return AudioFile(rate, frames, draw(st.integers(1, 6)), draw(st.sampled_from(SUBTYPES)), draw(st.integers(0, 2**16)))


SHORT_AFTER_RESAMPLING = AudioFile(32000, 31997, 1, "PCM_16", 0)  # 15,999 samples: crashed test and predict


def residuals(clip: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """||window - clip's window from s||^2 for every s in [-len(window), len(clip)], by FFT correlation."""
    n, length = len(clip), len(window)
    clip, window = clip.double(), window.double()
    padded = torch.nn.functional.pad(clip, (length, length))  # padded[s + length] is clip[s]
    size = len(padded) + length
    correlation = torch.fft.irfft(torch.fft.rfft(padded, size) * torch.fft.rfft(window.flip(0), size), size)
    cross = correlation[length - 1 : length - 1 + n + length + 1]  # sum_k window[k] padded[s + length + k]
    energy = torch.cat([padded.new_zeros(1), padded.pow(2).cumsum(0)])
    clip_energy = energy[length : length + n + length + 1] - energy[: n + length + 1]
    return window.pow(2).sum() - 2 * cross + clip_energy


def assert_a_training_window(clip: torch.Tensor, window: torch.Tensor, where: str) -> None:
    """`window` is `clip`'s window from a start inside the allowed range (all of a short clip, or
    wholly inside a long one)."""
    assert window.shape == (CLIP_SAMPLES,), where
    excess = len(clip) - CLIP_SAMPLES
    low, high = min(excess, 0), max(excess, 0)
    allowed = residuals(clip, window)[low + CLIP_SAMPLES : high + CLIP_SAMPLES + 1]
    assert allowed.min() < 1e-6 * (1 + window.double().pow(2).sum()), f"{where}: not a window at an allowed start"


def write_all(folder: Path, files: list[AudioFile]) -> list[Path]:
    return [spec.write(folder / f"{i}.wav") for i, spec in enumerate(files)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(audio_files(), min_size=1, max_size=3))
@example([SHORT_AFTER_RESAMPLING])
def test_decode_cache_and_device_batches_share_the_evaluation_window(files):
    with tempfile.TemporaryDirectory() as folder:
        paths = write_all(Path(folder), files)
        cache = WaveCache.ensure(paths, Path(folder) / "cache", SAMPLE_RATE, CLIP_SAMPLES)
        decoded = torch.stack([load_clip(path) for path in paths])
        assert decoded.shape == (len(paths), CLIP_SAMPLES)
        uncached = WaveformDataset(paths)
        assert all(torch.equal(uncached[i][0], decoded[i]) for i in range(len(paths)))
        cached = torch.stack([WaveformDataset(paths, cache=cache)[i][0] for i in range(len(paths))])
        torch.testing.assert_close(cached, decoded, atol=ONE_STEP, rtol=0)
        on_device = torch.cat([w for w, _ in DeviceBatches(cache, [0] * len(paths), 3, CLIP_SAMPLES)])
        assert torch.equal(on_device, cached)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(audio_files(), min_size=1, max_size=3), st.integers(0, 2**16))
@example([SHORT_AFTER_RESAMPLING], 0)
def test_every_training_path_places_each_clip_inside_the_allowed_range(files, seed):
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_all(Path(folder), files)
        cache = WaveCache.ensure(paths, Path(folder) / "cache", SAMPLE_RATE, CLIP_SAMPLES)
        for i, path in enumerate(paths):
            assert_a_training_window(read_audio(path), WaveformDataset(paths, train=True)[i][0], f"decode {files[i]}")
            cached = WaveformDataset(paths, train=True, cache=cache)[i][0]
            assert_a_training_window(cache.wave(i), cached, f"cache {files[i]}")
        batches = DeviceBatches(cache, list(range(len(paths))), 2, CLIP_SAMPLES, RandomSampler(paths), seed=seed)
        seen = []
        for windows, labels in batches:
            for window, label in zip(windows, labels.tolist()):
                assert_a_training_window(cache.wave(label), window, f"device batches {files[label]}")
                seen.append(label)
        assert sorted(seen) == list(range(len(paths)))  # each clip once an epoch


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(audio_files(), min_size=2, max_size=5))
@example([SHORT_AFTER_RESAMPLING, AudioFile(16000, 16000, 1, "PCM_16", 1)])
def test_a_dataloader_with_workers_batches_clips_of_any_length(files):
    with tempfile.TemporaryDirectory() as folder:
        paths = write_all(Path(folder), files)
        cache = WaveCache.ensure(paths, Path(folder) / "cache", SAMPLE_RATE, CLIP_SAMPLES)
        labels = list(range(len(paths)))
        for train in (False, True):
            dataset = WaveformDataset(paths, labels, train=train, cache=cache)
            loader = DataLoader(dataset, batch_size=len(paths), num_workers=2)
            (windows, got), = list(loader)
            assert windows.shape == (len(paths), CLIP_SAMPLES) and got.tolist() == labels
            for i, window in enumerate(windows):
                if train:
                    assert_a_training_window(cache.wave(i), window, f"worker {files[i]}")
                else:
                    assert torch.equal(window, dataset[i][0])


@given(st.lists(st.integers(1, 5 * CLIP_SAMPLES), min_size=1, max_size=16), st.integers(0, 2**16))
def test_random_starts_lie_in_the_allowed_range(lengths, seed):
    lengths = torch.tensor(lengths)
    starts = random_starts(lengths, CLIP_SAMPLES, torch.Generator().manual_seed(seed))
    excess = lengths - CLIP_SAMPLES
    assert ((starts >= excess.clamp(max=0)) & (starts <= excess.clamp(min=0))).all()


def test_random_starts_reach_every_placement():
    lengths = torch.tensor([7, 13])  # for a window of 10: a short clip's 4 paddings, a long one's 4 crops
    starts = random_starts(lengths.repeat(2000), 10, torch.Generator().manual_seed(0)).view(2000, 2)
    assert set(starts[:, 0].tolist()) == set(range(-3, 1)) and set(starts[:, 1].tolist()) == set(range(0, 4))


@given(
    st.integers(1, 64),
    st.lists(st.integers(-80, 80), min_size=1, max_size=6),
)
def test_shift_delays_each_row_and_fills_with_zeros(length, delays):
    waves = torch.arange(1.0, len(delays) * length + 1).view(len(delays), length)
    shifted = shift(waves, torch.tensor(delays))
    for row, wave, delay in zip(shifted, waves, delays):
        expected = [wave[k - delay].item() if 0 <= k - delay < length else 0.0 for k in range(length)]
        assert row.tolist() == expected
    assert torch.equal(shift(waves, 0), waves)


def test_crop_windows_zero_what_lies_outside_each_clip():
    samples = torch.tensor([9, 9, 9, 1, 2, 3, 4, 9, 9, 9])  # a clip of 4 from offset 3, neighbours 9
    rows = crop_windows(samples, torch.tensor([3, 3, 3]), torch.tensor([4, 4, 4]), torch.tensor([-2, 0, 2]), 3)
    assert rows.tolist() == [[0, 0, 1], [1, 2, 3], [3, 4, 0]]
