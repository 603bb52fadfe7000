"""Finding checkpoints: a file, a training run directory, or `last`/`best` of the latest run."""

from __future__ import annotations

from pathlib import Path

LAST = "last.ckpt"


def resolve_checkpoint(spec: str | Path, runs_dir: str | Path) -> Path:
    """The checkpoint file that `spec` names.

    `spec` is a .ckpt file; a run directory (its best checkpoint; `DIR:last` for its last.ckpt);
    or `best` / `last`: that checkpoint of the most recent run under `runs_dir`
    (e.g. outputs/train/runs).
    """
    text = str(spec)
    if text in ("best", "last"):
        return _from_run(latest_run(runs_dir), text)
    kind = "best"
    if text.endswith(":last"):
        text, kind = text[: -len(":last")], "last"
    path = Path(text)
    if path.is_file():
        return path
    if path.is_dir():
        return _from_run(path, kind)
    raise FileNotFoundError(f"checkpoint {spec!r}: no such file or run directory")


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
