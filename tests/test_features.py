import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_train
from speechcls.audio import CLIP_SAMPLES


@pytest.mark.parametrize("config", ["logmel", "logmel_10ms", "logmel_20ms"])
def test_logmel_equals_torchaudios_melspectrogram_and_amplitude_to_db(tmp_path, config):
    features = instantiate(compose_train(tmp_path, f"features={config}").features)
    scales = torch.tensor([[0.0], [1e-4], [0.1], [1.0], [4.0]])
    wave = torch.randn(len(scales), CLIP_SAMPLES, generator=torch.Generator().manual_seed(0)) * scales
    expected = features.to_db(features.mel(wave.unsqueeze(1)))
    torch.testing.assert_close(features(wave), expected, atol=1e-4, rtol=0)
