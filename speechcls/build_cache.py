"""Build the decoded-waveform cache of every split: `python -m speechcls.build_cache [data overrides]`.

Training builds the train and validation caches itself on first use; this does it ahead, for the test
and prediction files too, and prints where each split's cache is.
"""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from speechcls.config import CONFIG_DIR
from speechcls.data.datamodule import SpeechDataModule
from speechcls.data.dataset import WaveformDataset


def build_caches(datamodule: SpeechDataModule) -> dict[str, WaveformDataset]:
    """Every split's dataset, each backed by its cache (built when missing or stale)."""
    datamodule.prepare_data()
    datamodule.setup()
    datamodule.test_split()  # reads the test labels where training would
    splits = dict(datamodule.splits)
    splits["predict"] = datamodule.predict_dataset()
    return splits


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="build_cache")
def main(cfg: DictConfig) -> None:
    datamodule = instantiate(cfg.data, cache=True)
    for split, dataset in build_caches(datamodule).items():
        size = (dataset.cache.directory / "samples.int16").stat().st_size
        print(f"{split:>8}: {len(dataset):>6} clips, {size / 2**20:8.1f} MiB  {dataset.cache.directory}")


if __name__ == "__main__":
    main()
