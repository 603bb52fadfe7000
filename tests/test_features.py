from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_train
from speechcls.audio import CLIP_SAMPLES
from speechcls.features import PCEN, LogMel, reflect_pad
from speechcls.config import CONFIG_DIR

FRONT_ENDS = sorted(path.stem for path in (Path(CONFIG_DIR) / "features").glob("*.yaml"))
# Silence, a whisper, speech levels and a clipped shout: a clip's features may not depend on the others.
SCALES = torch.tensor([[0.0], [1e-4], [0.1], [1.0], [4.0]])


def waves(seed: int = 0) -> torch.Tensor:
    return torch.randn(len(SCALES), CLIP_SAMPLES, generator=torch.Generator().manual_seed(seed)) * SCALES


def front_end(tmp_path, config: str) -> LogMel:
    return instantiate(compose_train(tmp_path, f"features={config}").features)


@pytest.mark.parametrize("config", ["logmel", "logmel_10ms", "logmel_20ms"])
def test_logmel_equals_torchaudios_melspectrogram_and_amplitude_to_db(tmp_path, config):
    features = front_end(tmp_path, config)
    wave = waves()
    expected = torchaudio_db(features, wave)
    torch.testing.assert_close(features(wave), expected, atol=1e-4, rtol=0)


def torchaudio_db(features: LogMel, wave: torch.Tensor) -> torch.Tensor:
    return features.compress(features.mel(wave.unsqueeze(1)))


def test_clip_normalisation_standardises_each_clip_of_the_log_mel(tmp_path):
    features = front_end(tmp_path, "logmel_10ms_norm")
    assert features.normalize == "clip" and features.mel.hop_length == 160
    wave = waves()[1:]  # silence has no variance to scale
    normalized = features(wave).double()
    torch.testing.assert_close(normalized.mean(dim=(-2, -1)), torch.zeros(len(wave), 1, dtype=torch.double), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalized.std(dim=(-2, -1), correction=0), torch.ones(len(wave), 1, dtype=torch.double), atol=1e-4, rtol=0)
    # The same values as the dB features standardised by hand, clip by clip.
    for clip, db in zip(normalized, torchaudio_db(features, wave).double()):
        torch.testing.assert_close(clip, (db - db.mean()) / db.std(correction=0), atol=1e-4, rtol=0)
    # Loudness moves the dB level but not the normalised features (top_db floors aside, hence no silence here).
    torch.testing.assert_close(features(wave[1:2] * 3.0), features(wave[1:2]), atol=1e-3, rtol=0)


def test_clip_normalisation_rejects_an_unknown_option():
    with pytest.raises(ValueError, match="normalize must be one of"):
        LogMel(normalize="batch")


@pytest.mark.parametrize("hop_length", [160, 512])
def test_pcen_equals_librosas_pcen(hop_length):
    librosa = pytest.importorskip("librosa")  # the dev extra's reference implementation
    rng = np.random.default_rng(0)
    # Mel power over five decades, a burst after silence, and channels of different levels.
    energy = rng.exponential(size=(3, 40, 101)) * 10.0 ** rng.uniform(-4, 1, size=(3, 40, 1))
    energy[:, :, 30:50] *= 1e3
    expected = librosa.pcen(energy, sr=16000, hop_length=hop_length)
    pcen = PCEN(sample_rate=16000, hop_length=hop_length)
    torch.testing.assert_close(pcen(torch.from_numpy(energy)).numpy(), expected, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(pcen(torch.from_numpy(energy).float()).numpy(), expected.astype(np.float32), atol=1e-5, rtol=1e-4)
    other = {"time_constant": 0.06, "gain": 0.8, "bias": 10.0, "power": 0.25, "eps": 1e-3}
    expected = librosa.pcen(energy, sr=16000, hop_length=hop_length, **other)
    torch.testing.assert_close(PCEN(16000, hop_length, **other)(torch.from_numpy(energy)).numpy(), expected)


def test_pcen_front_end_is_librosas_pcen_of_the_mel_power(tmp_path):
    librosa = pytest.importorskip("librosa")
    features = front_end(tmp_path, "pcen_10ms")
    assert isinstance(features.compress, PCEN) and features.normalize == "none"
    wave = waves()
    power = features.mel(wave).double().numpy()
    expected = librosa.pcen(power, sr=16000, hop_length=160)[:, None]
    torch.testing.assert_close(features(wave).double().numpy(), expected, atol=2e-4, rtol=2e-4)


def test_pcen_rejects_parameters_outside_its_definition():
    with pytest.raises(ValueError, match="PCEN: .*bias=0"):
        PCEN(bias=0.0)


@pytest.mark.parametrize("config", FRONT_ENDS)
def test_a_clips_features_do_not_depend_on_the_other_clips_in_its_batch(tmp_path, config):
    features = front_end(tmp_path, config)
    wave = waves(seed=1)
    batch = features(wave)
    for index in range(len(wave)):
        torch.testing.assert_close(batch[index], features(wave[index : index + 1])[0], atol=1e-4, rtol=1e-5)
    # Nor on its position: the batch reversed gives each clip the same features.
    torch.testing.assert_close(features(wave.flip(0)), batch.flip(0), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("length", [3, 1000])
def test_reflect_pad_equals_torchs_reflection_padding(length):
    wave = torch.randn(2, length)
    expected = torch.nn.functional.pad(wave.unsqueeze(1), (2, 2), mode="reflect").squeeze(1)
    assert torch.equal(reflect_pad(wave, 2), expected)


def test_logmel_rejects_clips_too_short_for_its_fft():
    with pytest.raises(ValueError, match="100 samples are too short"):
        LogMel(n_fft=1024)(torch.randn(2, 100))
