"""Train, validate, test and checkpoint a classifier: `python -m speechcls.train [overrides]`."""

from __future__ import annotations

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

from speechcls.checkpoints import resolve_checkpoint
from speechcls.config import CONFIG_DIR, fit_setup, instantiate_all
from speechcls.data.conditions import accuracy_by_condition, results_of_test_split
from speechcls.inference import write_out_of_fold
from speechcls.module import SpeechClassifier
from speechcls.run_record import write_record

log = logging.getLogger(__name__)


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


def train(cfg: DictConfig) -> float | None:
    """Fit and test; returns the value of `cfg.optimized_metric` for sweepers."""
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    resume = resume_from(cfg)
    datamodule, module = fit_setup(cfg, resume)
    callbacks = cfg.callbacks
    if "val" not in datamodule.splits and callbacks.get("model_checkpoint") is not None:
        # Nothing to choose by: the last epoch's weights are the run's result.
        callbacks = OmegaConf.merge(callbacks, {"model_checkpoint": {"monitor": None, "filename": "epoch{epoch:03d}"}})
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=instantiate_all(callbacks), logger=instantiate_all(cfg.logger) or False
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
    test_split = datamodule.test_split() if cfg.test else None
    if test_split is not None:
        tested = trainer.test(
            module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False, weights_only=True
        )
        metrics.update({name: float(value) for name, value in tested[0].items()})
        metrics.update(test_accuracy_by_engine(trainer, module, datamodule))
    if datamodule.validation.folds is not None and "val" in datamodule.splits:
        write_out_of_fold(trainer, module, datamodule, best_path, Path(cfg.paths.output_dir))
    untested = "none: no data.test_csv and no validation split" if cfg.test else None
    splits = {"validation": datamodule.validation_name(), "test_data": test_split.name if test_split else untested}
    log_hyperparameters(trainer, cfg, metrics, splits)
    report(cfg, trainer, metrics, best_path, splits, time.perf_counter() - started)
    # The best epoch's value when the checkpoint callback tracked it (not in fast_dev_run), else the last.
    return metrics.get(f"best/{cfg.optimized_metric}", metrics.get(cfg.optimized_metric))


def test_accuracy_by_engine(trainer: L.Trainer, module: SpeechClassifier, datamodule) -> dict[str, float]:
    """`test/acc/<engine>` when the test labels name each clip's engine (the two-engine set), also
    logged to the run's loggers, from the probabilities the test loop kept."""
    split = datamodule.test_split()
    probabilities = torch.cat(module.test_probabilities) if module.test_probabilities else torch.zeros(0)
    if "engine" not in split.table or len(probabilities) < len(split.dataset):  # fast_dev_run, one DDP rank
        return {}
    by_condition = accuracy_by_condition(results_of_test_split(datamodule, probabilities))
    by_engine = by_condition[by_condition.condition == "engine"][["value", "accuracy"]]
    metrics = {f"test/acc/{engine}": float(accuracy) for engine, accuracy in by_engine.itertuples(index=False)}
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
    return metrics


def log_hyperparameters(
    trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float], splits: dict[str, str | None]
) -> None:
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
            for name, value in splits.items():  # TEXT tab: which clips validation and test metrics are of
                logger.experiment.add_text(f"data/{name}", str(value), global_step=trainer.global_step)
            logger.finalize("success")  # fit and test closed the writer already; flush the reopened one


def report(
    cfg: DictConfig,
    trainer: L.Trainer,
    metrics: dict[str, float],
    best_path: str,
    splits: dict[str, str | None],
    wall_time_s: float,
) -> None:
    """Write metrics.json into the run directory and print where everything is (rank 0 only)."""
    if not trainer.is_global_zero:
        return
    summary = {
        "status": "ok",
        "metrics": metrics,
        "best_checkpoint": best_path,
        **splits,
        "epochs": trainer.current_epoch,
        "wall_time_s": round(wall_time_s, 1),
    }
    write_record(cfg.paths.output_dir, summary)
    lines = [f"{name:>16}: {value:.4f}" for name, value in sorted(metrics.items()) if "/" in name]
    lines.append(f"{'val/ metrics on':>16}: {splits['validation']}")
    if splits["test_data"]:
        lines.append(f"{'test/ metrics on':>16}: {splits['test_data']}")
    lines.append(f"{'checkpoint':>16}: {best_path or '(none)'}")
    if trainer.logger is not None:
        lines.append(f"{'logs':>16}: {trainer.logger.log_dir}")
        lines.append(f"{'open with':>16}: tensorboard --logdir {cfg.paths.output_dir}")
    print("\n".join(["", "run summary", *lines]))


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
        write_record(cfg.paths.output_dir, {**failure, "wall_time_s": round(time.perf_counter() - started, 1)})
        return math.nan


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg, multirun=in_multirun())


if __name__ == "__main__":
    main()
