from pathlib import Path

import pytest

from hydra import compose, initialize_config_dir

from conftest import TINY_CLASSES, compose_train
from speechcls.config import CONFIG_DIR
from speechcls.module import build_module

EXPERIMENTS = sorted(path.stem for path in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


def test_seed_tutorial_composes_to_the_tutorials_settings(tmp_path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):  # compose_train sets the batch size
        cfg = compose(config_name="train", overrides=["data=kaggle", "data.root=unused", "experiment=seed_tutorial"])
    assert (cfg.model.arch, cfg.model.in_channels) == ("resnet18", 3)
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-4
    scheduler = cfg.scheduler
    assert (scheduler.scheduler.step_size, scheduler.scheduler.gamma, scheduler.interval) == (20, 0.1, "epoch")
    assert (cfg.data.batch_size, cfg.trainer.max_epochs) == (64, 30)
    assert (cfg.features.n_fft, cfg.features.hop_length, cfg.features.n_mels) == (1024, 512, 64)
    assert cfg.module.label_smoothing == 0.0
    assert build_module(cfg, TINY_CLASSES).augment.names == []


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_builds(tmp_path, name):
    cfg = compose_train(tmp_path, "data=kaggle", "data.root=unused", f"experiment={name}")
    module = build_module(cfg, TINY_CLASSES)
    assert module.hparams.net == dict(cfg.model)
