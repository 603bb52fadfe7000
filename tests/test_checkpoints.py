import os
import re

import pytest
import torch

from conftest import compose_train
from speechcls.checkpoints import AtomicCheckpointIO, CheckpointError, resolve_checkpoint
from speechcls.predict import predict


def make_run(root, name, files, mtime):
    checkpoints = root / name / "checkpoints"
    checkpoints.mkdir(parents=True)
    for file in files:
        torch.save({"state_dict": {}, "hyper_parameters": {}}, checkpoints / file)
        os.utime(checkpoints / file, (mtime, mtime))
    return root / name


def test_resolves_files_runs_and_latest(tmp_path):
    old = make_run(tmp_path, "old", ["epoch001-acc0.5.ckpt", "last.ckpt"], 1_000)
    new = make_run(tmp_path, "new", ["epoch003-acc0.9.ckpt", "last.ckpt"], 2_000)
    assert resolve_checkpoint("best", tmp_path) == new / "checkpoints" / "epoch003-acc0.9.ckpt"
    assert resolve_checkpoint("last", tmp_path) == new / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(old, tmp_path) == old / "checkpoints" / "epoch001-acc0.5.ckpt"
    assert resolve_checkpoint(f"{old}:last", tmp_path) == old / "checkpoints" / "last.ckpt"
    file = old / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(file, tmp_path) == file


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training run with checkpoints"):
        resolve_checkpoint("best", tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file or run directory"):
        resolve_checkpoint(tmp_path / "nope.ckpt", tmp_path)


def test_a_run_directory_means_last_when_resuming(tmp_path):
    run = make_run(tmp_path, "run", ["epoch001-acc0.5.ckpt", "last.ckpt"], 1_000)
    assert resolve_checkpoint(run, tmp_path, run_dir_means="last") == run / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint("best", tmp_path, run_dir_means="last") == run / "checkpoints" / "epoch001-acc0.5.ckpt"


def test_a_failed_checkpoint_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, path)
    with pytest.raises(AttributeError, match="pickle"):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(3), "unpicklable": lambda: None}, path)
    assert io.load_checkpoint(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("content", ["text", "torch file", "empty"])
def test_a_file_that_is_not_a_training_checkpoint_is_named_with_what_is_wrong(tmp_path, content):
    path = tmp_path / "model.ckpt"
    if content == "text":
        path.write_text("root:x:0:0:root:/root:/bin/bash\n")  # what ckpt_path=/etc/passwd gave torch
    elif content == "torch file":
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.touch()
    expected = "a PyTorch file but not a training checkpoint" if content == "torch file" else "not a checkpoint written by training"
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: {expected}")):
        resolve_checkpoint(path, tmp_path)


def test_predict_names_a_file_given_as_ckpt_path_that_is_no_checkpoint(tmp_path, kaggle_root):
    (tmp_path / "notes.txt").write_text("not a model")
    cfg = compose_train(tmp_path, f"data.root={kaggle_root}", f"ckpt_path={tmp_path / 'notes.txt'}", config_name="predict")
    with pytest.raises(CheckpointError, match="notes.txt: not a checkpoint written by training"):
        predict(cfg)
