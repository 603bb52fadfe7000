import json

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_train, run_train
from speechcls import train as train_module
from speechcls.module import SpeechClassifier

DDP_ON_CPU = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")


def test_ddp_on_two_cpu_processes_shares_one_run_and_syncs_metrics(tmp_path, kaggle_root):
    result = run_train(tmp_path, kaggle_root, *DDP_ON_CPU, "trainer.max_epochs=1", "logger=csv")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr
    [run] = (tmp_path / "outputs" / "train" / "runs").iterdir()  # rank 1 joined rank 0's run directory
    assert (run / "train_ddp_process_1.log").is_file()
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and checkpoints[0].startswith("epoch000-") and checkpoints[1] == "last.ckpt"
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "ok" and record["epochs"] == 1

    # Test ran on the validation split, half on each rank; the logged loss is that of the whole split.
    cfg = compose_train(tmp_path, "data=kaggle", f"data.root={kaggle_root}")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    waves, labels = next(iter(datamodule.val_dataloader()))
    module = SpeechClassifier.load_from_checkpoint(record["best_checkpoint"], map_location="cpu").eval()
    with torch.no_grad():
        smoothing = module.hparams.label_smoothing
        losses = torch.nn.functional.cross_entropy(module(waves), labels, reduction="none", label_smoothing=smoothing)
    assert len(labels) == 6
    assert record["metrics"]["test/loss"] == pytest.approx(losses.mean().item(), rel=1e-4)
    assert record["metrics"]["test/loss"] != pytest.approx(losses[::2].mean().item(), rel=1e-4)  # rank 0's half


def test_ddp_inside_a_local_multirun_is_refused(tmp_path, kaggle_root, monkeypatch):
    monkeypatch.setattr(train_module, "in_multirun", lambda: True)
    cfg = compose_train(tmp_path, "data=kaggle", f"data.root={kaggle_root}", *DDP_ON_CPU)
    with pytest.raises(RuntimeError, match="would re-launch the whole sweep in every process"):
        train_module.train(cfg)
