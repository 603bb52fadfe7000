import subprocess
import sys

import torch
from hydra.utils import instantiate

from conftest import TINY_CLASSES, compose_train
from speechcls.train import train


def test_fast_dev_run_through_the_composed_config(tmp_path, kaggle_root):
    cfg = compose_train(tmp_path, "data=kaggle", f"data.root={kaggle_root}", "trainer=debug")
    assert cfg.optimizer.lr == 1e-4 and cfg.scheduler.scheduler.step_size == 20
    assert cfg.features.hop_length == 512 and cfg.data.batch_size == 8
    train(cfg)


def test_training_writes_checkpoint_with_classes_and_tensorboard_events(tmp_path, kaggle_root):
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "trainer.max_epochs=2", "optimizer.lr=1e-3"
    )
    metric = train(cfg)
    assert 0.0 <= metric <= 1.0
    run = tmp_path / "run"
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["hyper_parameters"]["classes"] == sorted(TINY_CLASSES)
    assert last["epoch"] == 1
    # The scheduler was stepped once per epoch.
    assert last["lr_schedulers"][0]["last_epoch"] == 2
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "metrics.json").is_file()


def test_three_channel_model_replicates_the_spectrogram(tmp_path, kaggle_root):
    cfg = compose_train(tmp_path, "data=kaggle", f"data.root={kaggle_root}", "model.in_channels=3")
    net = instantiate(cfg.model, num_classes=5)
    assert net(torch.randn(2, 1, 64, 32)).shape == (2, 5)


def test_multirun_makes_one_directory_per_job(tmp_path, kaggle_root):
    command = [
        sys.executable, "-m", "speechcls.train", "-m", "optimizer.lr=1e-3,1e-4",
        "data=kaggle", f"data.root={kaggle_root}", "trainer=debug", "data.num_workers=0",
        f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    subprocess.run(command, check=True, cwd=tmp_path, capture_output=True, text=True)
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job in jobs:
        assert (tmp_path / "sweep" / job / "metrics.json").is_file()
