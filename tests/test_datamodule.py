from collections import Counter

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from hydra.errors import InstantiationException

from conftest import TINY_CLASSES, setup_datamodule
from speechcls.audio import CLIP_SAMPLES
from speechcls.data.tables import TableError


def make_datamodule(tmp_path, root, *overrides):
    return setup_datamodule(tmp_path, "kaggle", root, *overrides)


def test_split_is_stratified_sorted_and_reproducible(tmp_path, kaggle_root):
    first = make_datamodule(tmp_path, kaggle_root)
    second = make_datamodule(tmp_path, kaggle_root)
    assert first.classes == sorted(TINY_CLASSES)
    assert first.splits["val"].paths == second.splits["val"].paths
    assert Counter(first.splits["val"].labels) == {0: 2, 1: 2, 2: 2}
    assert set(first.splits["val"].paths).isdisjoint(first.splits["train"].paths)
    other_seed = make_datamodule(tmp_path, kaggle_root, "seed=7")
    assert other_seed.splits["val"].paths != first.splits["val"].paths


def test_eval_items_are_fixed_length_and_deterministic(tmp_path, kaggle_root):
    datamodule = make_datamodule(tmp_path, kaggle_root)
    val = datamodule.splits["val"]
    for index in range(len(val)):
        wave, label = val[index]
        assert wave.shape == (CLIP_SAMPLES,) and 0 <= label < 3
        assert (wave == val[index][0]).all()
    batch, labels = next(iter(datamodule.val_dataloader()))
    assert batch.shape == (6, CLIP_SAMPLES) and labels.shape == (6,)


def test_predict_loader_keeps_sample_order(tmp_path, kaggle_root):
    datamodule = make_datamodule(tmp_path, kaggle_root)
    names = [p.name for p in datamodule.predict_dataloader().dataset.paths]
    assert names == list(datamodule.predict_table()["file_name"])


def test_a_class_with_one_clip_is_a_clear_error(tmp_path, kaggle_root):
    root = tmp_path / "one"
    (root / "audio_files").mkdir(parents=True)
    for name in ("a.wav", "b.wav", "c.wav"):
        sf.write(root / "audio_files" / name, np.zeros(1600, np.float32), 16000)
    (root / "train.csv").write_text("file_name,target\na.wav,up\nb.wav,up\nc.wav,down\n")
    with pytest.raises(TableError, match="needs 2 clips of every class.*clips per class: down: 1, up: 2"):
        make_datamodule(tmp_path, root)


def engine_folder(tmp_path, kaggle_root, column="engine"):
    """kaggle_root's clips with an `engine` column: every "up" clip is the rare engine (a third of them)."""
    root = tmp_path / "engines"
    root.mkdir()
    (root / "audio_files").symlink_to(kaggle_root / "audio_files")
    table = pd.read_csv(kaggle_root / "train.csv")
    table[column] = np.where(table.target == "up", "rare", "common")
    table.to_csv(root / "train.csv", index=False)
    return root


@pytest.mark.parametrize("on_device", ["true", "false"])
@pytest.mark.parametrize("epoch", ["split", "largest"])
def test_balance_by_draws_each_engine_equally_often(tmp_path, kaggle_root, on_device, epoch):
    root = engine_folder(tmp_path, kaggle_root)
    draws = Counter()
    datamodule = make_datamodule(
        tmp_path, root, "data.balance_by=engine", f"data.balance_epoch={epoch}", f"data.on_device={on_device}"
    )
    loader = datamodule.train_dataloader()
    for _ in range(40):
        for _, labels in loader:
            draws.update(labels.tolist())
    up = datamodule.classes.index("up")
    # Unbalanced, "up" would be a third of the draws; balanced, the rare engine is half of them.
    assert abs(draws[up] / sum(draws.values()) - 0.5) < 0.05
    train_labels = datamodule.splits["train"].labels
    common = sum(label != up for label in train_labels)
    # `largest`: the common engine's clips are drawn as often as it holds clips, and so is the rare one.
    epoch_draws = len(train_labels) if epoch == "split" else 2 * common
    assert sum(draws.values()) == 40 * epoch_draws
    assert len(loader) == -(-epoch_draws // datamodule.batch_size)
    assert datamodule.splits["val"].paths == make_datamodule(tmp_path, root).splits["val"].paths


def test_balance_by_a_missing_column_names_the_csv(tmp_path, kaggle_root):
    root = engine_folder(tmp_path, kaggle_root, column="source")
    with pytest.raises(TableError, match=r"train\.csv: data\.balance_by='engine' needs that column"):
        make_datamodule(tmp_path, root, "data.balance_by=engine")


def test_an_unknown_balance_epoch_is_named(tmp_path, kaggle_root):
    root = engine_folder(tmp_path, kaggle_root)
    with pytest.raises(InstantiationException, match=r"data\.balance_epoch='longest': expected 'split' or 'largest'"):
        make_datamodule(tmp_path, root, "data.balance_by=engine", "data.balance_epoch=longest")


def test_clips_per_class_keeps_a_seeded_stratified_subset(tmp_path, kaggle_root):
    full = make_datamodule(tmp_path, kaggle_root)
    small = make_datamodule(tmp_path, kaggle_root, "data.clips_per_class=5")
    again = make_datamodule(tmp_path, kaggle_root, "data.clips_per_class=5")
    kept = small.splits["train"].paths + small.splits["val"].paths
    assert len(kept) == 15 and Counter(small.splits["train"].labels) == {0: 4, 1: 4, 2: 4}
    assert set(kept) < set(full.splits["train"].paths + full.splits["val"].paths)
    assert small.splits["val"].paths == again.splits["val"].paths
    other_seed = make_datamodule(tmp_path, kaggle_root, "data.clips_per_class=5", "seed=7")
    assert set(other_seed.splits["train"].paths) != set(small.splits["train"].paths)


@pytest.mark.parametrize("balance", [[], ["data.balance_by=engine"]])
def test_both_loader_paths_draw_the_same_epochs_for_a_seed(tmp_path, kaggle_root, balance):
    # One sampler (SpeechDataModule.train_sampler) orders the epochs of the DataLoader and of DeviceBatches.
    root = engine_folder(tmp_path, kaggle_root)

    def epochs(on_device):
        loader = make_datamodule(tmp_path, root, *balance, f"data.on_device={on_device}").train_dataloader()
        return [torch.cat([labels for _, labels in loader]).tolist() for _ in range(3)]

    on_device = epochs("true")
    assert on_device == epochs("false")
    assert on_device[0] != on_device[1]  # each epoch draws its own order
