"""Checkpoints: finding them (a file, a run directory, `last`/`best` of the latest run) and writing them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import ListConfig

from speechcls.atomic import atomic_write
from speechcls.run_record import METRICS_FILE, read_record

LAST = "last.ckpt"
# What `SpeechClassifier.load_from_checkpoint` and resuming read from a Lightning checkpoint.
REQUIRED_KEYS = ("state_dict", "hyper_parameters")


class CheckpointError(ValueError):
    """A file given as a checkpoint that is not one of this project's; the message names the file."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, memory-mapped (tensors are read only when used), checked to be one."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises anything from RuntimeError to IndexError on a foreign file
        raise CheckpointError(f"{path}: not a checkpoint written by training ({type(error).__name__}: {error})") from error
    missing = [key for key in REQUIRED_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: a PyTorch file but not a training checkpoint (no {', '.join(missing)})")
    return checkpoint


def resolve_checkpoint(spec: str | Path, runs_dir: str | Path, run_dir_means: str = "best") -> Path:
    """The checkpoint file that `spec` names.

    `spec` is a .ckpt file; a run directory (its `run_dir_means` checkpoint: best to predict, last to
    resume; `DIR:last` for its last.ckpt); or `best` / `last`: that checkpoint of the most recent run
    under `runs_dir` (e.g. outputs/train/runs). A file that is not a training checkpoint gets a
    CheckpointError naming it.
    """
    text = str(spec).removesuffix(":last")
    kind = "last" if text != str(spec) else run_dir_means
    path = Path(text)
    if text in ("best", "last"):
        path = _from_run(latest_run(runs_dir), text)
    elif path.is_dir():
        path = _from_run(path, kind)
    elif not path.is_file():
        raise FileNotFoundError(f"checkpoint {spec!r}: no such file or run directory")
    read_checkpoint(path)
    return path


def resolve_checkpoints(spec: Any, runs_dir: str | Path) -> list[Path]:
    """The checkpoint files of a model or an ensemble: a list of `resolve_checkpoint` specs, a sweep
    directory (the best checkpoint of each of its finished jobs, e.g. the models of a k-fold sweep), or
    one spec."""
    if isinstance(spec, (list, tuple, ListConfig)):
        return [resolve_checkpoint(item, runs_dir) for item in spec]
    jobs = sorted(Path(spec).glob(f"*/{METRICS_FILE}")) if Path(spec).is_dir() else []
    if not jobs:
        return [resolve_checkpoint(spec, runs_dir)]
    finished = [read_record(job.parent).get("best_checkpoint") for job in jobs]
    if not all(finished):
        missing = [job.parent.name for job, path in zip(jobs, finished) if not path]
        raise FileNotFoundError(f"sweep {spec}: job(s) {missing} have no checkpoint (failed or unfinished)")
    return [resolve_checkpoint(path, runs_dir) for path in finished]


def latest_run(runs_dir: str | Path) -> Path:
    """The most recently modified run directory under `runs_dir` that holds checkpoints."""
    runs = [p.parent.parent for p in Path(runs_dir).glob("*/checkpoints/*.ckpt")]
    if not runs:
        raise FileNotFoundError(f"no training run with checkpoints under {runs_dir}")
    return max(set(runs), key=lambda run: max(c.stat().st_mtime for c in (run / "checkpoints").glob("*.ckpt")))


def _from_run(run: Path, kind: str) -> Path:
    checkpoints = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    last = checkpoints / LAST
    if kind == "last":
        if not last.is_file():
            raise FileNotFoundError(f"{run}: no {LAST} to resume from")
        return last
    best = sorted(p for p in checkpoints.glob("*.ckpt") if p.name != LAST)
    if best:
        return max(best, key=lambda p: p.stat().st_mtime)
    if last.is_file():
        return last
    raise FileNotFoundError(f"{run}: no checkpoint in {checkpoints}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Local checkpoints written to a temporary file beside the target and renamed over it.

    Lightning's own save stages the file in the system temp directory and moves it; across file
    systems that move is a copy onto the target, so a kill mid-copy leaves a truncated last.ckpt and
    the previous one is gone. Remote paths keep Lightning's way.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path) as temporary:
            torch.save(checkpoint, temporary)
