"""Train, validate, test and checkpoint a classifier: `python -m speechcls.train [overrides]`."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from speechcls.module import SpeechClassifier

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def build_module(cfg: DictConfig, classes: list[str]) -> SpeechClassifier:
    """The LightningModule from the composed config, with plain-dict sub-configs for the checkpoint."""
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    return SpeechClassifier(
        classes=classes,
        net=plain(cfg.model),
        features=plain(cfg.features),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler) or None,
        **plain(cfg.module),
    )


def instantiate_all(group: DictConfig | None) -> list:
    """Objects of a group of named `_target_` entries (callbacks, loggers); null entries are off."""
    return [instantiate(node) for node in (group or {}).values() if node is not None]


def train(cfg: DictConfig) -> float | None:
    """Fit and test; returns the value of `cfg.optimized_metric` for sweepers."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule.classes)
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=instantiate_all(cfg.callbacks), logger=instantiate_all(cfg.logger) or False
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint else ""
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics[f"best/{checkpoint.monitor}"] = float(checkpoint.best_model_score)
    if cfg.test:
        tested = trainer.test(module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False)
        metrics.update({name: float(value) for name, value in tested[0].items()})
    report(cfg, trainer, metrics, best_path)
    if checkpoint is not None and checkpoint.monitor == cfg.optimized_metric:
        return metrics.get(f"best/{cfg.optimized_metric}")
    return metrics.get(cfg.optimized_metric)


def report(cfg: DictConfig, trainer: L.Trainer, metrics: dict[str, float], best_path: str) -> None:
    """Write metrics.json into the run directory and print where everything is."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {"metrics": metrics, "best_checkpoint": best_path, "epochs": trainer.current_epoch}
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    if not trainer.is_global_zero:
        return
    lines = [f"{name:>16}: {value:.4f}" for name, value in sorted(metrics.items()) if "/" in name]
    lines.append(f"{'checkpoint':>16}: {best_path or '(none)'}")
    if trainer.logger is not None:
        lines.append(f"{'logs':>16}: {trainer.logger.log_dir}")
        lines.append(f"{'open with':>16}: tensorboard --logdir {output_dir}")
    print("\n".join(["", "run summary", *lines]))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
