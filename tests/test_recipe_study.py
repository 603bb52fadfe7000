"""The recipe study (conf/hparams_search/recipe_study.yaml, docs/recipes.md): every run composes and
builds, and the multirun ends in the per-recipe summary."""

import itertools

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import TINY_CLASSES, compose_train, run_train
from speechcls.audio import CLIP_SAMPLES
from speechcls.config import CONFIG_DIR
from speechcls.module import build_module

STUDY = "hparams_search=recipe_study"


def study_params() -> dict[str, list[str]]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", [STUDY], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    return {key: value.split(",") for key, value in cfg.hydra.sweeper.params.items()}


def test_the_study_is_3_recipes_by_4_conditions_by_3_seeds_uncapped_and_every_run_composes_and_builds(tmp_path):
    params = study_params()
    assert params == {
        "data": ["synthetic_voices_small", "synthetic_cross_engine", "synthetic", "synthetic_voices"],
        "experiment": ["bc_resnet_32ms", "resnet18_10ms", "resnet18_32ms"],
        "seed": ["1", "2", "3"],
    }
    runs = {
        (data, experiment): compose_train(tmp_path, STUDY, f"data={data}", f"experiment={experiment}", "seed=1")
        for data, experiment in itertools.product(params["data"], params["experiment"])
    }
    for (data, experiment), cfg in runs.items():
        # Every run trains for its recipe's whole length: no batch cap.
        assert "limit_train_batches" not in cfg.trainer and cfg.callbacks.confusion_matrix is None
        # The data config does not touch the recipe, nor the recipe the data set.
        assert (cfg.model, cfg.features) == (runs[params["data"][0], experiment].model, runs[params["data"][0], experiment].features)
        assert cfg.data.root == runs[data, params["experiment"][0]].data.root
    for experiment in params["experiment"]:  # the network takes the recipe's features
        cfg = runs[params["data"][0], experiment]
        module = build_module(cfg, TINY_CLASSES).eval()
        with torch.no_grad():
            assert module(torch.randn(2, CLIP_SAMPLES)).shape == (2, len(TINY_CLASSES))
        if experiment != "bc_resnet_32ms":  # the candidates: each clip's log-mel standardised, at a 10 or 32 ms hop
            assert (cfg.features.hop_length, cfg.features.normalize) == ({"resnet18_10ms": 160, "resnet18_32ms": 512}[experiment], "clip")
    conditions = {data: runs[data, "bc_resnet_32ms"].data for data in params["data"]}
    small, cross, voices = (conditions[name] for name in ("synthetic_voices_small", "synthetic_cross_engine", "synthetic_voices"))
    assert (small.clips_per_class, voices.clips_per_class) == (50, None)
    assert (cross.train_csv, small.train_csv, voices.train_csv) == ("train_espeak.csv", "train.csv", "train.csv")
    assert (cross.balance_by, small.balance_by, voices.balance_by) == (None, "engine", "engine")
    # The same folder and synthesizer: the small and cross-engine runs reuse the two-engine set, never regenerate it.
    for condition in (small, cross):
        assert (condition.root, condition.synthesizer, condition.test_csv) == (voices.root, voices.synthesizer, voices.test_csv)


def test_the_baseline_is_the_earlier_best_and_best_is_the_studys_winner(tmp_path):
    baseline = compose_train(tmp_path, STUDY, "experiment=bc_resnet_32ms")
    assert (baseline.model.width, baseline.features.hop_length, baseline.features.normalize, baseline.trainer.max_epochs) == (8, 512, "none", 20)
    best, winner = (compose_train(tmp_path, f"experiment={name}") for name in ("best", "resnet18_10ms"))
    assert OmegaConf.to_container(best, resolve=False) == OmegaConf.to_container(winner, resolve=False)


def test_the_study_multirun_ends_in_mean_and_std_over_seeds(tmp_path, kaggle_root):
    # The study's sweep cut down to the tiny folder and one recipe (a command-line value replaces the study's
    # list, as run_train's data=kaggle does), two of its seeds, one batch each. Grouping by recipe and
    # data set is tested on stub jobs (test_sweeps.py).
    sweep = tmp_path / "sweep"
    result = run_train(
        tmp_path, kaggle_root, STUDY, "experiment=bc_resnet_32ms", "trainer.max_epochs=1", "+trainer.limit_train_batches=1",
        "seed=1,2", "logger=csv", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = pd.read_csv(sweep / "summary.csv")
    assert sorted(jobs.seed) == [1, 2] and set(jobs.status) == {"ok"} and jobs["time/epoch_s"].gt(0).all()
    by_recipe = pd.read_csv(sweep / "summary_by_recipe.csv")
    assert len(by_recipe) == 1 and (by_recipe.jobs[0], by_recipe.finished[0]) == (2, 2)
    by_recipe = by_recipe.iloc[0]
    assert by_recipe["test/acc mean"] == pytest.approx(jobs["test/acc"].mean())
    assert by_recipe["test/acc std"] == pytest.approx(jobs["test/acc"].std(ddof=1))
    assert by_recipe["time/epoch_s mean"] == pytest.approx(jobs["time/epoch_s"].mean())
    assert "Mean ± standard deviation over seeds" in result.stdout
    assert (sweep / "summary_by_recipe.png").stat().st_size > 0
