import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY_CLASSES, compose_train
from hydra.utils import instantiate

from speechcls.audio import coloured
from speechcls.augment import (
    Augmentation,
    BackgroundNoise,
    Mixup,
    ParametricEqualizer,
    RandomGain,
    SpecAugment,
    SpeedPerturbation,
    TimeShift,
)
from speechcls.module import build_module
from speechcls.train import train


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def speech_like(batch: int = 4, samples: int = 1600) -> torch.Tensor:
    """Tones of different pitch in the middle of the clip, silence at both ends."""
    t = torch.arange(samples) / 16000
    envelope = ((t > 0.03) & (t < 0.07)).float()
    return torch.stack([envelope * torch.sin(2 * torch.pi * (300 + 100 * i) * t) for i in range(batch)])


def test_time_shift_moves_each_clip_within_the_limit_filling_with_silence():
    wave = torch.zeros(8, 1000)
    wave[:, 500] = 1.0
    shifted = TimeShift(max_seconds=0.01, p=1.0)(wave)  # 160 samples
    positions = shifted.argmax(dim=1) - 500
    assert (shifted.sum(dim=1) == 1).all()
    assert positions.abs().max() <= 160 and len(positions.unique()) > 1
    edge = torch.ones(1, 1000)
    assert (TimeShift(max_seconds=0.01, p=1.0)(edge) == 0).any()  # shifted in silence, no wrap-around


def test_random_gain_scales_each_clip_by_one_factor_within_the_limit():
    wave = speech_like()
    louder = RandomGain(max_db=6.0, p=1.0)(wave)
    ratio = louder.abs().amax(dim=1) / wave.abs().amax(dim=1)
    assert torch.allclose(louder, wave * ratio[:, None], atol=1e-6)
    assert ((ratio >= 10 ** (-6 / 20) - 1e-6) & (ratio <= 10 ** (6 / 20) + 1e-6)).all()
    assert not torch.allclose(ratio, torch.ones_like(ratio))


@pytest.mark.parametrize("source", ["coloured", "folder"])
def test_background_noise_is_added_at_a_snr_in_the_range(tmp_path, source):
    folder = None
    if source == "folder":
        rng = np.random.default_rng(0)
        for name in ("white.wav", "hum.wav"):
            sf.write(tmp_path / name, 0.1 * rng.standard_normal(4000).astype(np.float32), 16000)
        folder = str(tmp_path)
    wave = speech_like()
    noisy = BackgroundNoise(snr_db=(10.0, 20.0), p=1.0, folder=folder)(wave)
    noise = noisy - wave
    snr = 10 * torch.log10(wave.pow(2).mean(1) / noise.pow(2).mean(1))
    assert ((snr > 10 - 1e-3) & (snr < 20 + 1e-3)).all()
    assert noise[:, :100].abs().sum() > 0  # noise covers the silence too


def test_background_noise_reads_only_the_stretch_of_each_recording(tmp_path):
    for name, level in (("a.wav", 0.1), ("b.wav", 0.2)):
        sf.write(tmp_path / name, np.full(4000, level, np.float32), 16000, subtype="FLOAT")
    noise = BackgroundNoise(p=1.0, folder=str(tmp_path), stretch=(0.25, 0.75))
    noise(speech_like())
    expected = torch.cat([torch.full((2000,), 0.1), torch.full((2000,), 0.2)])
    assert torch.equal(noise.recordings, expected)


def test_background_noise_folder_without_enough_noise_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"BackgroundNoise: no .wav files in {tmp_path}"):
        BackgroundNoise(p=1.0, folder=str(tmp_path))(speech_like())
    sf.write(tmp_path / "short.wav", np.zeros(1000, np.float32), 16000)
    with pytest.raises(ValueError, match=r"holds 1000 samples of noise, fewer than a clip \(1600\)"):
        BackgroundNoise(p=1.0, folder=str(tmp_path))(speech_like())


def test_speed_perturbation_changes_pitch_by_the_factor():
    t = torch.arange(16000) / 16000
    wave = torch.sin(2 * torch.pi * 1000 * t)[None]
    peak_hz = lambda clip: float(torch.fft.rfft(clip[0, 4000:12000]).abs().argmax() * 16000 / 8000)
    faster = SpeedPerturbation(factor=(1.1, 1.1), p=1.0)(wave)
    assert peak_hz(faster) == pytest.approx(1100, abs=5)
    assert faster.shape == wave.shape and (faster[0, :700] == 0).all()  # the clip ran out: silence
    slower = SpeedPerturbation(factor=(0.8, 0.8), p=1.0)(wave)
    assert peak_hz(slower) == pytest.approx(800, abs=5)


def level_db(wave: torch.Tensor) -> torch.Tensor:
    """Each clip's power in dB after its first quarter (past a filter's onset)."""
    return 10 * wave[:, 4000:].pow(2).mean(-1).log10()


def test_parametric_equalizer_boosts_its_band_by_the_gain_and_leaves_far_tones():
    t = torch.arange(16000) / 16000
    tones = torch.stack([torch.sin(2 * torch.pi * hz * t) for hz in (1000, 150, 6000)])
    boosted = ParametricEqualizer(bands=1, gain_db=(6, 6), freq_hz=(1000, 1000), q=(1, 1), p=1.0)(tones)
    gain = level_db(boosted) - level_db(tones)
    assert gain[0] == pytest.approx(6.0, abs=0.05) and gain[1:].abs().max() < 0.5


def test_parametric_equalizer_draws_a_colour_per_example():
    tone = torch.sin(2 * torch.pi * 1000 * torch.arange(16000) / 16000).repeat(16, 1)
    gain = level_db(ParametricEqualizer(bands=1, freq_hz=(1000, 1000), p=1.0)(tone)) - level_db(tone)
    assert gain.abs().max() <= 12.05 and gain.std() > 3  # uniform in +-12 dB: std about 7
    with pytest.raises(ValueError, match=r"freq_hz must lie in \(0, 8000.0\)"):
        ParametricEqualizer(freq_hz=(100, 9000))


def test_spec_augment_masks_bands_and_frames_to_each_examples_mean():
    spectrogram = torch.randn(16, 1, 64, 32) - torch.arange(16).view(16, 1, 1, 1) * 10
    masked = SpecAugment(freq_masks=1, freq_width=0.2, time_masks=1, time_width=0.2, p=1.0)(spectrogram)
    changed = masked != spectrogram
    assert changed.any(dim=(1, 2, 3)).float().mean() > 0.5
    mean = spectrogram.mean(dim=(-2, -1), keepdim=True).expand_as(spectrogram)
    assert torch.allclose(masked[changed], mean[changed], atol=1e-4)
    rows = changed.all(dim=3).sum(dim=(1, 2))  # masked mel bins are whole rows
    assert rows.max() <= round(0.2 * 64) and len(rows.unique()) > 1  # widths differ per example


def test_mixup_blends_inputs_and_targets_with_the_same_weights_and_partners():
    unique = torch.eye(32)  # each example its own class: a blended input shows its weights and partner
    mixed, mixed_target = Mixup(alpha=0.4, p=1.0)(unique, unique.clone())
    assert torch.equal(mixed, mixed_target)
    assert torch.allclose(mixed_target.sum(1), torch.ones(32))
    assert (mixed_target.diagonal() >= 0.5).all()  # an example's own class keeps the majority
    assert (mixed_target.diagonal() < 1).sum() > 16
    untouched, _ = Mixup(alpha=0.4, p=0.0)(unique, unique.clone())
    assert torch.equal(untouched, unique)


@pytest.mark.parametrize(
    "transform",
    [
        TimeShift(p=0.0),
        RandomGain(p=0.0),
        BackgroundNoise(p=0.0),
        SpeedPerturbation(p=0.0),
        ParametricEqualizer(p=0.0),
    ],
    ids=lambda t: type(t).__name__,
)
def test_probability_zero_leaves_the_batch_unchanged(transform):
    wave = speech_like()
    assert torch.equal(transform(wave), wave)


def test_probability_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match=r"RandomGain: p must be in \[0, 1\], got 1.5"):
        RandomGain(p=1.5)
    with pytest.raises(ValueError, match=r"Mixup: p must be in \[0, 1\], got -0.1"):
        Mixup(p=-0.1)
    with pytest.raises(ValueError, match="Mixup: alpha must be positive, got 0"):
        Mixup(alpha=0)


def compose_module(tmp_path, *overrides):
    cfg = compose_train(tmp_path, "data=kaggle", "data.root=unused", "model=bc_resnet", "model.width=1", *overrides)
    return build_module(cfg, TINY_CLASSES)


TRANSFORMS = [
    "wave.time_shift", "wave.speed", "wave.gain", "wave.reverb", "wave.noise", "wave.equalizer",
    "spectrogram.spec_augment", "mixup",
]  # fmt: skip


@pytest.mark.parametrize("only", TRANSFORMS)
def test_each_augmentation_changes_training_batches_and_never_evaluation_ones(tmp_path, only):
    overrides = [
        "augment=equalizer",
        "augment.mixup={_target_:speechcls.augment.Mixup,p:0.5}",
        "augment.wave.reverb={_target_:speechcls.augment.RoomReverb,rooms:2,p:0.5}",
        *(f"augment.{t}=null" for t in TRANSFORMS if t != only),
        f"augment.{only}.p=1.0",
    ]
    module = compose_module(tmp_path, *overrides)
    assert module.augment.names == [only.split(".")[-1]]
    seen = []
    module.net.register_forward_hook(lambda net, inputs, output: seen.append(inputs[0].clone()))
    wave, target = speech_like(8, 16000), torch.arange(8) % len(TINY_CLASSES)
    clean = module.features(wave)

    module.train()
    module.training_step((wave, target), 0)
    assert not torch.allclose(seen[-1], clean)
    module.eval()
    module.validation_step((wave, target), 0)
    assert torch.equal(seen[-1], clean)
    module.test_step((wave, target), 0)
    assert torch.equal(seen[-1], clean)


def test_default_augment_config_builds_the_documented_pipeline(tmp_path):
    cfg = compose_train(tmp_path, "data=kaggle", "data.root=unused")
    augment = instantiate(cfg.augment)
    assert isinstance(augment, Augmentation)
    assert augment.names == ["time_shift", "speed", "gain", "noise", "spec_augment"]
    off = instantiate(compose_train(tmp_path, "data=kaggle", "data.root=unused", "augment.wave.noise=null").augment)
    assert off.names == ["time_shift", "speed", "gain", "spec_augment"]
    none = compose_train(tmp_path, "data=kaggle", "data.root=unused", "augment=none")
    assert build_module(none, TINY_CLASSES).augment.names == []


def test_training_with_strong_augmentation_and_label_smoothing_runs(tmp_path, kaggle_root):
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "trainer=debug", "augment=strong",
        "module.label_smoothing=0.1", "model=bc_resnet", "model.width=1",
    )  # fmt: skip
    train(cfg)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_coloured_noise_has_a_one_over_f_power_spectrum(exponent):
    noise = coloured(torch.randn(64, 16000, dtype=torch.float64), exponent)
    power = torch.fft.rfft(noise).abs().pow(2).mean(0)[1:]
    frequencies = torch.fft.rfftfreq(16000, dtype=torch.float64)[1:]
    slope = torch.linalg.lstsq(torch.stack([frequencies.log(), torch.ones_like(frequencies)], 1), power.log()[:, None]).solution[0]
    assert slope.item() == pytest.approx(-exponent, abs=0.05)


def test_edge_windows_relabel_keywords_cut_by_the_window_edge():
    from speechcls.augment import EdgeWindows

    torch.manual_seed(0)
    classes = ["_silence_", "_unknown_", "go", "yes"]
    wave = torch.randn(400, 16000)
    target = torch.arange(400) % 4
    moved, labels = EdgeWindows(max_seconds=0.6, min_kept=0.8, p=1.0)(wave, target, classes)
    kept = moved.pow(2).sum(dim=1) / wave.pow(2).sum(dim=1)
    keyword = target >= 2
    # A keyword window keeps its word while it holds 80 % of the clip's energy, else it is _unknown_.
    assert torch.equal(labels[keyword], torch.where(kept[keyword] < 0.8, 1, target[keyword]))
    assert torch.equal(labels[~keyword], target[~keyword])  # silence and unknown stay what they are
    assert 0.4 <= float((kept[keyword] < 0.8).float().mean()) <= 0.9  # shifts up to 0.6 s: most cut some
    assert moved.shape == wave.shape and (moved != wave).any(dim=1).float().mean() > 0.95
    untouched, same = EdgeWindows(p=0.0)(wave, target, classes)
    assert torch.equal(untouched, wave) and torch.equal(same, target)
    with pytest.raises(ValueError, match="not a class here"):
        EdgeWindows()(wave, target, ["go", "yes"])


def test_phone_band_leaves_nothing_above_4_khz():
    from speechcls.augment import PhoneBand

    torch.manual_seed(0)
    wave = 0.1 * torch.randn(8, 16000)
    narrow = PhoneBand(p=1.0)(wave)
    power = torch.fft.rfft(narrow).abs().pow(2)
    high = torch.fft.rfftfreq(16000, 1 / 16000) > 4000
    assert narrow.shape == wave.shape
    assert float(power[:, high].sum() / power.sum()) < 5e-3  # white noise had half its power up there


def test_room_reverb_gives_each_clip_a_room_at_its_own_level():
    pytest.importorskip("pyroomacoustics")
    from speechcls.augment import RoomReverb

    clicks = torch.zeros(16, 16000)
    clicks[:, 1600] = 1.0
    heard = RoomReverb(rooms=4, p=1.0)(clicks)
    assert heard.shape == clicks.shape and torch.allclose(heard.norm(dim=-1), clicks.norm(dim=-1), rtol=1e-4)
    assert heard[:, :1600].abs().max() < 1e-6  # a room only follows the sound
    energy = heard.pow(2)
    tail = energy[:, 2400:].sum(-1) / energy.sum(-1)  # more than 50 ms after the click
    assert (tail > 5e-3).all() and len(set(tail.round(decimals=4).tolist())) >= 2  # rooms differ from clip to clip
    with pytest.raises(ValueError, match="rooms must be at least 1"):
        RoomReverb(rooms=0)
