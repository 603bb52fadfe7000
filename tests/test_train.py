import json

import torch

from conftest import TINY_CLASSES, compose_train
from speechcls.train import train


def test_fast_dev_run_through_the_composed_config(tmp_path, kaggle_root):
    cfg = compose_train(tmp_path, "data=kaggle", f"data.root={kaggle_root}", "trainer=debug")
    assert cfg.optimizer.lr == 3e-3 and cfg.scheduler.interval == "step"
    assert cfg.features.hop_length == 512 and cfg.data.batch_size == 8
    train(cfg)


def test_training_writes_checkpoint_with_classes_and_tensorboard_events(tmp_path, kaggle_root):
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "trainer.max_epochs=2", "optimizer=adam", "optimizer.lr=1e-3",
        "scheduler=steplr",
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
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["test_data"].startswith("the validation split")  # no test CSV: test/ is validation
