"""Export a checkpoint as a self-contained model: raw 16 kHz waveforms (batch, samples) -> class scores.

`python -m speechcls.export ckpt_path=... format=onnx|torchscript` writes the model (log-mel features
inside the graph) and labels.txt, then checks the exported model against the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from speechcls.checkpoints import resolve_checkpoint
from speechcls.config import CONFIG_DIR
from speechcls.inference import load_classifier, load_exported

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}


def export(checkpoint: str | Path, output_dir: str | Path, format: str = "onnx", tolerance: float = 1e-3) -> Path:
    """Write the exported model and labels.txt into `output_dir`; returns the model's path."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
    module = load_classifier(checkpoint).eval()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / FORMATS[format]
    example = torch.randn(2, module.clip_samples)
    if format == "onnx":
        module.to_onnx(
            path,
            example,
            dynamo=True,
            input_names=["waveform"],
            output_names=["scores"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    else:
        module.to_torchscript(path, method="trace", example_inputs=example)
    (output_dir / "labels.txt").write_text("\n".join(module.classes) + "\n")
    wave = torch.randn(3, module.clip_samples)
    with torch.inference_mode():
        difference = float((load_exported(path)(wave) - module(wave)).abs().max())
    if difference > tolerance:
        raise RuntimeError(f"{path}: exported scores differ from the checkpoint's by {difference:.2e} > {tolerance}")
    print(f"exported {checkpoint} -> {path} (+ labels.txt); max score difference {difference:.1e}")
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    checkpoint = resolve_checkpoint(cfg.ckpt_path, cfg.runs_dir)
    export(checkpoint, cfg.output_dir, cfg.format, cfg.tolerance)


if __name__ == "__main__":
    main()
