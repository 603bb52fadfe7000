"""What every entry point shares about its config: where the configs are, and how a group of named
`_target_` entries becomes objects."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from speechcls.module import SpeechClassifier, build_module, resumed_module

# The configs ship as the package speechcls.conf (conf/ of the checkout, mapped in pyproject.toml): an
# editable install and a wheel find them alike, from any working directory.
CONFIG_DIR = str(importlib.resources.files("speechcls.conf"))


def instantiate_all(group: DictConfig | None) -> list:
    """Objects of a group of named `_target_` entries (callbacks, loggers); null entries are off."""
    return [instantiate(node) for node in (group or {}).values() if node is not None]


def fit_setup(cfg: DictConfig, checkpoint: Path | None = None) -> tuple[L.LightningDataModule, SpeechClassifier]:
    """The data module, prepared and set up for fitting, and the classifier: the config's, or as
    `checkpoint`'s run built it; compiled in place with `cfg.compile` (parameter names, hence
    checkpoints, stay those of the plain net)."""
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    classes = datamodule.classes
    module = build_module(cfg, classes) if checkpoint is None else resumed_module(checkpoint, classes)
    if cfg.compile:
        module.net.compile()
    return datamodule, module
