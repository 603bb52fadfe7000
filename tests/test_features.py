import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_train
from speechcls.audio import CLIP_SAMPLES
from speechcls.features import LogMel, reflect_pad


@pytest.mark.parametrize("config", ["logmel", "logmel_10ms", "logmel_20ms"])
def test_logmel_equals_torchaudios_melspectrogram_and_amplitude_to_db(tmp_path, config):
    features = instantiate(compose_train(tmp_path, f"features={config}").features)
    scales = torch.tensor([[0.0], [1e-4], [0.1], [1.0], [4.0]])
    wave = torch.randn(len(scales), CLIP_SAMPLES, generator=torch.Generator().manual_seed(0)) * scales
    expected = features.to_db(features.mel(wave.unsqueeze(1)))
    torch.testing.assert_close(features(wave), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("length", [3, 1000])
def test_reflect_pad_equals_torchs_reflection_padding(length):
    wave = torch.randn(2, length)
    expected = torch.nn.functional.pad(wave.unsqueeze(1), (2, 2), mode="reflect").squeeze(1)
    assert torch.equal(reflect_pad(wave, 2), expected)


def test_logmel_rejects_clips_too_short_for_its_fft():
    with pytest.raises(ValueError, match="100 samples are too short"):
        LogMel(n_fft=1024)(torch.randn(2, 100))
