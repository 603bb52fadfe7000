import csv
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_train
from speechcls.models.bc_resnet import BCResNet, SubSpectralNorm
from speechcls.models.complexity import count_macs, count_parameters
from speechcls.config import CONFIG_DIR
from speechcls.train import train

# Networks on log-mels; the speech embedding takes its own front end (tests/test_speech_embedding.py).
MODELS = sorted(path.stem for path in (Path(CONFIG_DIR) / "model").glob("*.yaml") if path.stem != "speech_embedding")


@pytest.mark.parametrize("name", MODELS)
def test_model_config_builds_and_trains_on_log_mels(tmp_path, name):
    cfg = compose_train(tmp_path, "data=kaggle", "data.root=unused", f"model={name}")
    net = instantiate(cfg.model, num_classes=5)
    logits = net(torch.randn(2, 1, cfg.features.n_mels, 32))
    assert logits.shape == (2, 5)
    logits.logsumexp(dim=1).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_three_channel_config_feeds_the_tutorials_replicated_spectrogram(tmp_path):
    cfg = compose_train(tmp_path, "data=kaggle", "data.root=unused", "model=resnet18_3ch")
    model = instantiate(cfg.model, num_classes=5).eval()
    spectrogram = torch.randn(2, 1, cfg.features.n_mels, 32)
    assert model.net.conv1.in_channels == 3  # torchvision's own stem, as the tutorial used it
    torch.testing.assert_close(model(spectrogram), model.net(spectrogram.repeat(1, 3, 1, 1)))


def test_torchvision_builder_options_reach_the_network(tmp_path):
    cfg = compose_train(tmp_path, "data=kaggle", "data.root=unused", "+model.zero_init_residual=true")
    net = instantiate(cfg.model, num_classes=5).net
    assert all(not block.bn2.weight.any() for layer in (net.layer1, net.layer4) for block in layer)
    assert instantiate(cfg.model, num_classes=5, zero_init_residual=False).net.layer1[0].bn2.weight.all()


def test_bc_resnet_is_over_ten_times_smaller_than_resnet18(tmp_path):
    def size(name):
        cfg = compose_train(tmp_path, "data=kaggle", "data.root=unused", f"model={name}")
        return count_parameters(instantiate(cfg.model, num_classes=35))

    compact = size("bc_resnet")
    assert compact < 500_000
    assert size("resnet18") >= 10 * compact


def test_sub_spectral_norm_names_a_frequency_axis_it_cannot_split():
    with pytest.raises(ValueError, match="SubSpectralNorm: 6 frequency bins do not split into 4 sub-bands"):
        SubSpectralNorm(8, 4)(torch.randn(2, 8, 6, 5))
    with pytest.raises(ValueError, match="do not split into 4 sub-bands"):
        BCResNet(num_classes=3, width=1)(torch.randn(2, 1, 40, 32))  # 40 mels: 5 bins after the strides


def test_macs_of_a_convolution_and_a_linear_layer():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10))
    assert count_macs(net, torch.randn(1, 1, 8, 8)) == 4 * 9 * 64 + 256 * 10


def test_counting_macs_leaves_batch_norm_statistics_and_mode_alone():
    net = BCResNet(num_classes=3, width=1).train()
    before = {name: buffer.clone() for name, buffer in net.named_buffers()}
    count_macs(net, torch.randn(1, 1, 64, 32))
    assert net.training
    assert all(torch.equal(before[name], buffer) for name, buffer in net.named_buffers())


def test_training_prints_and_logs_parameters_and_macs(tmp_path, kaggle_root, caplog):
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "model=bc_resnet", "model.width=1", "logger=csv",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1", "test=false",
    )  # fmt: skip
    with caplog.at_level("INFO"):
        train(cfg)
    net = BCResNet(num_classes=3, width=1)
    params, macs = count_parameters(net), count_macs(net, torch.randn(1, 1, 64, 32))
    assert f"BCResNet: {params / 1e6:.3f} M parameters, {macs / 1e6:.1f} M multiply-accumulates per clip" in caplog.text
    with open(tmp_path / "run" / "csv" / "metrics.csv") as file:
        logged = [row for row in csv.DictReader(file) if row["model/params"]]
    values = [(float(row["model/params"]), float(row["model/macs_per_clip"]), row["step"]) for row in logged]
    assert values == [(params, macs, "0")]
