"""A killed run resumes where it stopped, in its own directory; a checkpoint never runs code on load."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_train
from speechcls.checkpoints import CheckpointError
from speechcls.train import train

EPOCHS = 2
STEPS_PER_EPOCH = 3  # 24 training clips of the tiny folder, batch 8


def lean_overrides(tmp_path):
    """Only the checkpoint callbacks: resuming is about them and the logger, and images cost seconds."""
    callbacks = compose_train(tmp_path, "data=kaggle", "data.root=unused").callbacks
    keep = {"model_checkpoint", "last_checkpoint"}
    return [f"callbacks.{name}=null" for name, node in callbacks.items() if name not in keep and node is not None]


def start_training(tmp_path, kaggle_root, *overrides):
    command = [
        sys.executable, "-m", "speechcls.train", "data=kaggle", f"data.root={kaggle_root}", "data.num_workers=0",
        "data.batch_size=8", "data.cache=false", "callbacks.progress_bar=null", f"paths.root_dir={tmp_path}",
        f"trainer.max_epochs={EPOCHS}", "test=false", *lean_overrides(tmp_path), *overrides,
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_after_first_epoch(process, tmp_path, signum):
    """Send `signum` as soon as the run's first last.ckpt exists; its run directory and output."""
    deadline = time.monotonic() + 300
    while not (found := list((tmp_path / "outputs" / "train" / "runs").glob("*/checkpoints/last.ckpt"))):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    process.send_signal(signum)
    output = process.communicate(timeout=300)[0]
    return found[0].parent.parent, output


def saved_epoch(run):
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]


def assert_resumed(run, killed_epoch, resumed_pid):
    """The run finished its epochs in its own directory, continuing the killed one's state."""
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == EPOCHS - 1 and last["global_step"] == EPOCHS * STEPS_PER_EPOCH
    # The optimizer's and the scheduler's counts include the killed process's steps: both were restored.
    assert all(int(s["step"]) == EPOCHS * STEPS_PER_EPOCH for s in last["optimizer_states"][0]["state"].values())
    per_step = last["hyper_parameters"]["scheduler"]["interval"] == "step"
    assert last["lr_schedulers"][0]["last_epoch"] == (EPOCHS * STEPS_PER_EPOCH if per_step else EPOCHS)
    assert json.loads((run / "metrics.json").read_text())["epochs"] == EPOCHS
    # The resumed process wrote TensorBoard events into the same directory, from the next epoch on.
    # (One file per SummaryWriter the process opened: the epochs are in one of them.)
    epochs = set()
    for events in (run / "tensorboard").glob(f"events.out.tfevents.*.{resumed_pid}.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if "epoch" in accumulator.Tags()["scalars"]:
            epochs |= {int(s.value) for s in accumulator.Scalars("epoch")}
    assert epochs == set(range(killed_epoch + 1, EPOCHS))


def test_sigterm_then_resume_last(tmp_path, kaggle_root):
    run, output = kill_after_first_epoch(start_training(tmp_path, kaggle_root), tmp_path, signal.SIGTERM)
    assert f"stopped by SIGTERM; resume with: python -m speechcls.train ckpt_path={run}" in output
    killed_epoch = saved_epoch(run)
    assert killed_epoch < EPOCHS - 1
    resumed = start_training(tmp_path, kaggle_root, "ckpt_path=last")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert f"Restored all states from the checkpoint at {run / 'checkpoints' / 'last.ckpt'}" in output
    assert_resumed(run, killed_epoch, resumed.pid)


def test_sigkill_then_resume_the_run_directory(tmp_path, kaggle_root):
    process = start_training(tmp_path, kaggle_root)
    run, _ = kill_after_first_epoch(process, tmp_path, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    killed_epoch = saved_epoch(run)
    assert killed_epoch < EPOCHS - 1
    # As a new launch would: Hydra made a fresh directory, the run goes on in the old one.
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "data.cache=false", f"trainer.max_epochs={EPOCHS}",
        "test=false", f"paths.output_dir={tmp_path / 'relaunch'}", f"ckpt_path={run}", *lean_overrides(tmp_path),
    )  # fmt: skip
    train(cfg)
    assert_resumed(run, killed_epoch, os.getpid())
    assert not (tmp_path / "relaunch" / "checkpoints").exists()


def test_a_checkpoint_cannot_run_code_when_loaded(tmp_path, kaggle_root):
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    torch.save({"state_dict": {}, "hyper_parameters": Payload()}, tmp_path / "evil.ckpt")
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "data.cache=false", f"ckpt_path={tmp_path / 'evil.ckpt'}"
    )
    with pytest.raises(CheckpointError, match="evil.ckpt: not a checkpoint written by training .*Weights only load failed"):
        train(cfg)
    assert not marker.exists()
