"""Train, validate, test and checkpoint a classifier: `python -m speechcls.train [overrides]`."""

from __future__ import annotations

import importlib.resources
import json
import logging
import math
import signal
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from speechcls.atomic import atomic_write
from speechcls.checkpoints import read_checkpoint, resolve_checkpoint
from speechcls.data.conditions import accuracy_by_condition, results_of_test_split
from speechcls.data.tables import read_table
from speechcls.module import SpeechClassifier
from speechcls.summarize import METRICS_FILE

# The configs ship as the package speechcls.conf (conf/ of the checkout, mapped in pyproject.toml): an
# editable install and a wheel find them alike, from any working directory.
CONFIG_DIR = str(importlib.resources.files("speechcls.conf"))

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, classes: list[str]) -> SpeechClassifier:
    """The LightningModule from the composed config, with plain-dict sub-configs for the checkpoint."""
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    return SpeechClassifier(
        classes=classes,
        net=plain(cfg.model),
        features=plain(cfg.features),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler) or None,
        augment=plain(cfg.augment) or None,
        **plain(cfg.module),
    )


def resume_from(cfg: DictConfig) -> Path | None:
    """The checkpoint `ckpt_path` names (a run directory: its last.ckpt), or None for a fresh run.

    A resumed run continues in its checkpoint's run directory: checkpoints, TensorBoard events and
    metrics.json go on where they were. Hydra's directory of this launch keeps only its config and log.
    """
    if cfg.ckpt_path is None:
        return None
    checkpoint = resolve_checkpoint(cfg.ckpt_path, cfg.runs_dir, run_dir_means="last")
    if checkpoint.parent.name == "checkpoints":
        cfg.paths.output_dir = str(checkpoint.parent.parent)
    log.info("resuming from %s in %s", checkpoint, cfg.paths.output_dir)
    return checkpoint


def resumed_module(checkpoint: Path, classes: list[str]) -> SpeechClassifier:
    """The module as the checkpoint's run built it: a changed model, feature or optimizer config cannot
    silently alter a resumed run."""
    hparams = read_checkpoint(checkpoint)["hyper_parameters"]
    hparams.pop("gemm_small_maps", None)  # retired option of earlier checkpoints: now speechcls.callbacks.CPUTuning
    if list(hparams["classes"]) != list(classes):
        raise ValueError(
            f"{checkpoint} was trained on the classes {hparams['classes']}, the data has {classes}: resume "
            "with the data overrides of the original run (its .hydra/overrides.yaml lists them)"
        )
    return SpeechClassifier(**hparams)


def instantiate_all(group: DictConfig | None) -> list:
    """Objects of a group of named `_target_` entries (callbacks, loggers); null entries are off."""
    return [instantiate(node) for node in (group or {}).values() if node is not None]


def train(cfg: DictConfig) -> float | None:
    """Fit and test; returns the value of `cfg.optimized_metric` for sweepers."""
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    resume = resume_from(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule.classes) if resume is None else resumed_module(resume, datamodule.classes)
    if cfg.compile:
        module.net.compile()  # in place: parameter names, hence checkpoints, stay those of the plain net
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=instantiate_all(cfg.callbacks), logger=instantiate_all(cfg.logger) or False
    )
    relaunches = trainer.world_size > 1 and not trainer.strategy.cluster_environment.creates_processes_externally
    if relaunches and in_multirun():
        # Lightning would re-run this script's command line, `-m` included, once per extra device.
        raise RuntimeError(
            "multi-process DDP inside a local multirun would re-launch the whole sweep in every process; run DDP "
            "jobs one at a time, or with a launcher that starts one process per device (hydra/launcher=slurm with "
            "hydra.launcher.tasks_per_node equal to trainer.devices)"
        )
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SIGTERMException:
        # Lightning stops at the next batch and would exit with status 0, as if the run had finished.
        log.warning(
            "stopped by SIGTERM; resume with: python -m speechcls.train ckpt_path=%s and the same data overrides",
            cfg.paths.output_dir,
        )
        raise SystemExit(128 + signal.SIGTERM) from None
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint else ""
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics[f"best/{checkpoint.monitor}"] = float(checkpoint.best_model_score)
    if cfg.test:
        tested = trainer.test(
            module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False, weights_only=True
        )
        metrics.update({name: float(value) for name, value in tested[0].items()})
        metrics.update(test_accuracy_by_engine(trainer, module, datamodule))
    log_hyperparameters(trainer, cfg, metrics)
    # Without a labelled test CSV Lightning's test stage runs on the validation split: say so.
    tested_on = (datamodule.test_csv or "the validation split (no data.test_csv)") if cfg.test else None
    report(cfg, trainer, metrics, best_path, tested_on, time.perf_counter() - started)
    # The best epoch's value when the checkpoint callback tracked it (not in fast_dev_run), else the last.
    return metrics.get(f"best/{cfg.optimized_metric}", metrics.get(cfg.optimized_metric))


def test_accuracy_by_engine(trainer: L.Trainer, module: SpeechClassifier, datamodule) -> dict[str, float]:
    """`test/acc/<engine>` when the test labels name each clip's engine (the two-engine set), also
    logged to the run's loggers. `module` holds the tested (best) weights: trainer.test loaded them."""
    if datamodule.test_csv is None or "engine" not in read_table(datamodule.root / datamodule.test_csv):
        return {}
    loader = datamodule.test_dataloader()
    probabilities = torch.cat(trainer.predict(module, dataloaders=loader)).float().cpu()
    if len(probabilities) < len(loader.dataset):  # fast_dev_run or limit_predict_batches: part of the split
        return {}
    by_condition = accuracy_by_condition(results_of_test_split(datamodule, probabilities))
    by_engine = by_condition[by_condition.condition == "engine"][["value", "accuracy"]]
    metrics = {f"test/acc/{engine}": float(accuracy) for engine, accuracy in by_engine.itertuples(index=False)}
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
    return metrics


def log_hyperparameters(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """The resolved config with the final metrics in TensorBoard's HPARAMS tab, where sweep jobs compare.

    Paths, callbacks and loggers are run plumbing, left out to keep the columns readable. HPARAMS reads
    each metric from the scalar of its name; `final/<metric>` keeps those single points off the curves.
    """
    config = OmegaConf.to_container(cfg, resolve=True)
    params = {group: value for group, value in config.items() if group not in ("paths", "callbacks", "logger")}
    final = {f"final/{name}": value for name, value in metrics.items() if "/" in name}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics=final, step=trainer.global_step)
            logger.finalize("success")  # fit and test closed the writer already; flush the reopened one


def report(
    cfg: DictConfig,
    trainer: L.Trainer,
    metrics: dict[str, float],
    best_path: str,
    tested_on: str | None,
    wall_time_s: float,
) -> None:
    """Write metrics.json into the run directory and print where everything is (rank 0 only)."""
    if not trainer.is_global_zero:
        return
    summary = {
        "status": "ok",
        "metrics": metrics,
        "best_checkpoint": best_path,
        "test_data": tested_on,
        "epochs": trainer.current_epoch,
        "wall_time_s": round(wall_time_s, 1),
    }
    write_metrics(cfg, summary)
    lines = [f"{name:>16}: {value:.4f}" for name, value in sorted(metrics.items()) if "/" in name]
    if tested_on:
        lines.append(f"{'test/ metrics on':>16}: {tested_on}")
    lines.append(f"{'checkpoint':>16}: {best_path or '(none)'}")
    if trainer.logger is not None:
        lines.append(f"{'logs':>16}: {trainer.logger.log_dir}")
        lines.append(f"{'open with':>16}: tensorboard --logdir {cfg.paths.output_dir}")
    print("\n".join(["", "run summary", *lines]))


def write_metrics(cfg: DictConfig, summary: dict) -> None:
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(output_dir / METRICS_FILE) as temporary:
        temporary.write_text(json.dumps(summary, indent=2))


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run(cfg: DictConfig, multirun: bool) -> float | None:
    """`train(cfg)`; in a multirun, a failure is recorded and NaN returned instead of raising.

    Hydra's launchers end a sweep at the first job that raises. In a sweep a failed job is a result:
    its metrics.json says why (the traceback is in the job's log), NaN tells the sweeper (Optuna marks
    the trial failed) and the other jobs run. A single run still fails loudly.
    """
    if not multirun:
        return train(cfg)
    started = time.perf_counter()
    try:
        return train(cfg)
    except Exception as error:
        log.exception("job failed, the sweep goes on")
        failure = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
        write_metrics(cfg, {**failure, "wall_time_s": round(time.perf_counter() - started, 1)})
        return math.nan


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg, multirun=in_multirun())


if __name__ == "__main__":
    main()
