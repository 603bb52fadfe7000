import numpy as np
import pytest
import soundfile as sf
import torch

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE, fix_length, load_clip, read_audio, read_audio_blocks
from speechcls.features import LogMel


def test_read_audio_downmixes_and_resamples(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1) * 0.5
    sf.write(tmp_path / "s.wav", stereo.astype(np.float32), 44100)
    wave = read_audio(tmp_path / "s.wav")
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(wave.numel() - SAMPLE_RATE) <= 1
    # Mean of a 0.5-amplitude sine and silence: peak ~0.25.
    assert wave.abs().max() == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize(
    "rate,channels,seconds,block_seconds",
    [(8000, 2, 7.3, 1.0), (44100, 1, 5.01, 0.7), (16000, 1, 3.3, 1.0), (22050, 3, 2.0, 0.25), (48000, 2, 0.3, 1.0)],
)
def test_blocks_put_together_are_the_whole_file(tmp_path, rate, channels, seconds, block_seconds):
    rng = np.random.default_rng(rate)
    sf.write(tmp_path / "a.wav", 0.3 * rng.standard_normal((int(rate * seconds), channels)), rate, subtype="PCM_16")
    blocks = list(read_audio_blocks(tmp_path / "a.wav", block_seconds))
    assert len(blocks) > 1 or seconds <= block_seconds
    assert max(len(block) for block in blocks) <= block_seconds * SAMPLE_RATE + 1
    torch.testing.assert_close(torch.cat(blocks), read_audio(tmp_path / "a.wav"), rtol=0, atol=1e-6)


def test_fix_length_pads_centred_and_trims_to_the_loudest_window():
    short = torch.ones(10)
    padded = fix_length(short, 20)
    assert padded.shape == (20,) and padded[:5].sum() == 0 and padded[5:15].sum() == 10
    long = torch.zeros(100)
    long[70:80] = 1.0
    trimmed = fix_length(long, 20)
    assert trimmed.shape == (20,) and trimmed.sum() == 10


def test_fix_length_is_deterministic_at_eval_and_random_in_training():
    wave = torch.randn(30)
    assert torch.equal(fix_length(wave, 50), fix_length(wave, 50))
    g = torch.Generator().manual_seed(0)
    placements = {int(fix_length(torch.ones(30), 50, random=True, generator=g).argmax()) for _ in range(20)}
    assert len(placements) > 1


def test_load_clip_has_clip_length(tmp_path):
    sf.write(tmp_path / "short.wav", np.ones(8000, np.float32) * 0.1, 8000)
    assert load_clip(tmp_path / "short.wav").shape == (CLIP_SAMPLES,)


def test_logmel_shape_and_per_item_top_db():
    features = LogMel()
    quiet, loud = torch.randn(2, CLIP_SAMPLES) * torch.tensor([[1e-4], [1.0]])
    batch = features(torch.stack([quiet, loud]))
    assert batch.shape == (2, 1, 64, 32)
    # An item's features must not depend on the rest of its batch.
    torch.testing.assert_close(batch[0], features(quiet[None])[0])
