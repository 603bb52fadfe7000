"""Validation as the user chooses it: none (every clip trains), a fraction, or one fold of k; out-of-fold
predictions over a k-fold sweep; ensembles of several checkpoints; splits that cannot be made."""

import json
from collections import Counter

import pandas as pd
import pytest
import torch

from conftest import TINY_CLASSES, compose_train, run_train, setup_datamodule
from speechcls.data.splits import ValidationSplit
from speechcls.data.tables import TableError
from speechcls.inference import load_classifier
from speechcls.predict import predict
from speechcls.train import train


def clips(per_class: dict[str, int]) -> pd.DataFrame:
    names = [(f"{word}_{i}.wav", word) for word, count in per_class.items() for i in range(count)]
    return pd.DataFrame(names, columns=["file_name", "target"])


def test_folds_partition_the_clips_stratified_and_repeat_for_a_seed():
    table = clips({"yes": 10, "no": 15, "up": 5})
    held_out = [ValidationSplit(folds=5, fold=i, seed=3).split(table, "train.csv")[1] for i in range(5)]
    names = [name for fold in held_out for name in fold.file_name]
    assert sorted(names) == sorted(table.file_name)  # every clip in exactly one fold
    for fold in held_out:
        assert Counter(fold.target) == {"yes": 2, "no": 3, "up": 1}
    train, val = ValidationSplit(folds=5, fold=2, seed=3).split(table, "train.csv")
    assert set(train.file_name) == set(table.file_name) - set(val.file_name)
    assert list(val.file_name) == list(held_out[2].file_name)
    assert list(ValidationSplit(folds=5, fold=2, seed=4).split(table, "train.csv")[1].file_name) != list(val.file_name)


def test_a_split_that_cannot_be_made_names_the_class_counts():
    table = clips({"yes": 4, "no": 4, "up": 3})
    with pytest.raises(TableError, match=r"train\.csv: data\.folds=4 needs at least 4 clips of every class; "
                       r"clips per class: up: 3, yes: 4, no: 4 \(lower data\.folds\)"):  # fmt: skip
        ValidationSplit(folds=4).split(table, "train.csv")
    # 4 clips a word of 35 words: 20 % is 28 clips, fewer than the classes (scikit-learn's own stack trace).
    words = clips({f"word{i:02d}": 4 for i in range(35)})
    with pytest.raises(TableError, match=r"needs 2 clips of every class and 35 clips \(one a class\) on each side; 140 "
                       r"clips would give 28 to validation; clips per class: word00: 4.*data\.val_fraction=0"):  # fmt: skip
        ValidationSplit(val_fraction=0.2).split(words, "train.csv")
    with pytest.raises(ValueError, match=r"data\.folds=3, data\.fold=3"):
        ValidationSplit(folds=3, fold=3)


def test_the_data_module_draws_its_fold(tmp_path, kaggle_root):
    folds = [setup_datamodule(tmp_path, "kaggle", kaggle_root, "data.folds=3", f"data.fold={i}") for i in range(3)]
    held_out = [path for datamodule in folds for path in datamodule.splits["val"].paths]
    assert len(held_out) == len(set(held_out)) == len(pd.read_csv(kaggle_root / "train.csv"))
    assert folds[1].validation_name() == "fold 1 of 3 (stratified, seed 42)"


@pytest.fixture(scope="module")
def every_clip_run(tmp_path_factory, kaggle_root):
    tmp_path = tmp_path_factory.mktemp("every_clip")
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "data.val_fraction=0", "trainer.max_epochs=2",
        "optimizer.lr=1e-3", "test=false",
    )  # fmt: skip
    train(cfg)
    return tmp_path / "run"


def test_val_fraction_0_trains_on_every_clip_and_keeps_the_last_epoch(every_clip_run, kaggle_root):
    record = json.loads((every_clip_run / "metrics.json").read_text())
    assert record["status"] == "ok" and record["validation"].startswith("none: every clip trains")
    assert not any(name.startswith("val/") for name in record["metrics"])
    checkpoint = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1  # the second (last) epoch's weights
    accumulator_dir = every_clip_run / "tensorboard"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(accumulator_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert "data/validation/text_summary" in accumulator.Tags()["tensors"]


def test_a_run_without_validation_predicts_a_submission(tmp_path, every_clip_run, kaggle_root):
    cfg = compose_train(tmp_path, f"data.root={kaggle_root}", f"ckpt_path={every_clip_run}", config_name="predict")
    submission = pd.read_csv(predict(cfg))
    assert len(submission) == len(pd.read_csv(kaggle_root / "sample_submission.csv"))
    assert set(submission.target) <= set(TINY_CLASSES)


def test_an_ensemble_averages_its_members_probabilities(tmp_path, kaggle_root, tiny_run, every_clip_run):
    def probabilities(spec, name):
        cfg = compose_train(
            tmp_path / name, f"data.root={kaggle_root}", f"ckpt_path={spec}", "save_probs=true", config_name="predict"
        )
        return pd.read_csv(predict(cfg).with_name("submission_probs.csv")).set_index("file_name")

    members = [probabilities(tiny_run, "a"), probabilities(every_clip_run, "b")]
    ensemble = probabilities(f"[{tiny_run},{every_clip_run}]", "ensemble")
    pd.testing.assert_frame_equal(ensemble, (members[0] + members[1]) / 2, atol=2e-6, check_exact=False)
    assert not members[0].equals(members[1])  # two different models


def test_a_k_fold_sweep_predicts_every_clip_once_out_of_fold(tmp_path, kaggle_root):
    result = run_train(
        tmp_path, kaggle_root, "data.folds=3", "data.fold=0,1,2", "trainer.max_epochs=1", "test=false",
        "logger=csv", "hydra.sweep.dir=sweep", multirun=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    oof = pd.read_csv(tmp_path / "sweep" / "oof_predictions.csv")
    train_csv = pd.read_csv(kaggle_root / "train.csv")
    assert sorted(oof.file_name) == sorted(train_csv.file_name)  # each clip once, by the fold that held it out
    assert oof.set_index("file_name").target.sort_index().equals(train_csv.set_index("file_name").target.sort_index())
    assert sorted(oof.fold.unique()) == [0, 1, 2]
    assert oof[TINY_CLASSES].sum(axis=1).round(4).eq(1).all()
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "Out-of-fold predictions" in summary and "Mean ± standard deviation over seeds and folds" in summary
    assert f"| {len(train_csv)} " in summary  # the out-of-fold clip count, as an integer
    # The sweep directory is an ensemble of its folds' best checkpoints.
    cfg = compose_train(tmp_path, f"data.root={kaggle_root}", f"ckpt_path={tmp_path / 'sweep'}", config_name="predict")
    assert len(pd.read_csv(predict(cfg))) == len(pd.read_csv(kaggle_root / "sample_submission.csv"))
    assert load_classifier(json.loads((tmp_path / "sweep" / "0" / "metrics.json").read_text())["best_checkpoint"])
