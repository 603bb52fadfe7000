"""The channel simulation of the two-engine set: every condition keeps a clip's length and finiteness,
is a function of its drawn row, and does what its name says."""

import numpy as np
import pytest
import torch

pytest.importorskip("pedalboard", reason="the channel simulation needs the voices extra: pip install -e '.[voices]'")
pytest.importorskip("pyroomacoustics", reason="the channel simulation needs the voices extra: pip install -e '.[voices]'")

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE  # noqa: E402
from speechcls.synth.channel import CONDITIONS, Channel  # noqa: E402


def speech_like(seed: int) -> torch.Tensor:
    """Half a second of harmonic tone with a noisy onset, at a random offset in a 1 s clip."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 40)) * np.hanning(len(t))
    clip = np.zeros(CLIP_SAMPLES)
    start = rng.integers(0, CLIP_SAMPLES - len(t))
    clip[start : start + len(t)] = tone + 0.05 * rng.standard_normal(len(t))
    return torch.from_numpy((0.5 * clip / np.abs(clip).max()).astype(np.float32))


def only(condition: str, **changes) -> Channel:
    return Channel(weights={condition: 1.0}, **changes)


@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_each_condition_keeps_length_and_finiteness_and_depends_on_its_row_only(condition, seed):
    channel = only(condition, mic_probability=0.5)
    row = channel.draw(np.random.default_rng(seed))
    assert row == channel.draw(np.random.default_rng(seed)) and row["channel"] == condition
    clip = speech_like(seed)
    out = channel.apply(clip, row)
    assert out.shape == clip.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(out, channel.apply(clip, row))
    if condition != "clean" or row["mic_eq_db"]:
        assert not torch.allclose(out, clip, atol=1e-3)
    else:
        assert torch.equal(out, clip)


def band_energy(wave: torch.Tensor, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave.numpy())) ** 2
    frequencies = np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)
    return float(spectrum[(frequencies >= low) & (frequencies < high)].sum())


@pytest.mark.parametrize("codec", ["gsm", "mp3-v8.0"])
def test_a_phone_line_keeps_the_telephone_band(codec):
    clip = speech_like(3)
    row = {**only("phone").draw(np.random.default_rng(0)), "codec": codec, "mic_eq_db": None}
    out = only("phone").apply(clip, row)
    assert band_energy(out, 4200, 8000) < 1e-3 * band_energy(out, 300, 3400)
    assert band_energy(clip, 4200, 8000) > 0.02 * band_energy(clip, 300, 3400)  # the input had it


def test_a_large_room_reverberates_longer_than_a_small_one():
    impulse = torch.zeros(CLIP_SAMPLES)
    impulse[1000] = 1.0
    tails = {}
    for size in ("small_room", "large_room"):
        channel = only(size, mic_probability=0.0)
        row = channel.draw(np.random.default_rng(5))
        response = channel.apply(impulse, row).numpy()
        energy = response**2
        tails[size] = energy[1000 + int(0.1 * SAMPLE_RATE) :].sum() / energy.sum()  # after 100 ms
    assert 0 < tails["small_room"] < tails["large_room"]


def test_unknown_conditions_are_rejected():
    with pytest.raises(ValueError, match="cellar"):
        Channel(weights={"cellar": 1.0})
