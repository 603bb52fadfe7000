import json
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from conftest import compose_train, setup_datamodule, write_tone
from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE, AudioError, read_audio
from speechcls.data.device_batches import DeviceBatches
from speechcls.data.twelve_class import KEYWORDS as TWELVE_CLASS_WORDS
from speechcls.data.twelve_class import SILENCE, UNKNOWN
from speechcls.evaluate import evaluate
from speechcls.predict import predict
from speechcls.train import train

# yes/no/up are keywords of the 12-class task, bed/cat are "unknown" words.
WORDS = {"yes": 500, "no": 700, "up": 900, "bed": 1100, "cat": 1300}
NOISE_SECONDS = 12


@pytest.fixture(scope="module")
def speechcommands_root(tmp_path_factory):
    """A tiny Speech Commands v0.02 tree: 4 clips a word (2 train, 1 validation, 1 test), 2 noise files."""
    root = tmp_path_factory.mktemp("speech_commands_v0.02")
    rng = np.random.default_rng(0)
    lists = {"validation_list.txt": [], "testing_list.txt": []}
    for word, frequency in WORDS.items():
        (root / word).mkdir()
        for i in range(4):
            name = f"{word}/{i:08x}_nohash_{i}.wav"
            write_tone(root / name, frequency, 1.0, SAMPLE_RATE, rng)
            if i == 2:
                lists["validation_list.txt"].append(name)
            if i == 3:
                lists["testing_list.txt"].append(name)
    for list_name, names in lists.items():
        (root / list_name).write_text("\n".join(names) + "\n")
    (root / "_background_noise_").mkdir()
    for name in ("white_noise", "running_tap"):
        noise = 0.1 * rng.standard_normal(NOISE_SECONDS * SAMPLE_RATE)
        sf.write(root / "_background_noise_" / f"{name}.wav", noise.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    return root


def make_datamodule(tmp_path, root, *overrides):
    return setup_datamodule(tmp_path, "speechcommands", root, *overrides)


def names(dataset, root):
    return sorted(path.relative_to(root).as_posix() for path in dataset.paths)


def test_official_split_with_35_words(tmp_path, speechcommands_root):
    root = speechcommands_root
    datamodule = make_datamodule(tmp_path, root)
    assert datamodule.classes == sorted(WORDS)
    assert names(datamodule.splits["val"], root) == sorted((root / "validation_list.txt").read_text().split())
    assert names(datamodule.splits["test"], root) == sorted((root / "testing_list.txt").read_text().split())
    train_names = names(datamodule.splits["train"], root)
    assert len(train_names) == 2 * len(WORDS) and all(name.split("_")[-1] in ("0.wav", "1.wav") for name in train_names)
    wave, label = datamodule.splits["val"][0]
    assert wave.shape == (CLIP_SAMPLES,) and datamodule.classes[label] == datamodule.splits["val"].paths[0].parent.name
    assert len(datamodule.test_dataloader().dataset) == len(WORDS)


def test_twelve_class_task_maps_unknown_words_and_slices_silence(tmp_path, speechcommands_root):
    datamodule = make_datamodule(
        tmp_path, speechcommands_root, "data.task=12",
        "data.silence_clips={train:6,val:2,test:3}", "data.unknown_clips={train:3,val:null,test:null}",
    )  # fmt: skip
    assert datamodule.classes == sorted([*TWELVE_CLASS_WORDS, UNKNOWN, SILENCE]) and len(datamodule.classes) == 12
    counts = {
        split: Counter(datamodule.classes[label] for label in dataset.labels)
        for split, dataset in datamodule.splits.items()
    }
    # 2 train clips of each of 3 keywords; unknown: 3 of the 4 train clips of bed and cat; 1 a word in val/test.
    assert counts["train"] == {"yes": 2, "no": 2, "up": 2, UNKNOWN: 3, SILENCE: 6}
    assert counts["val"] == {"yes": 1, "no": 1, "up": 1, UNKNOWN: 2, SILENCE: 2}
    assert counts["test"] == {"yes": 1, "no": 1, "up": 1, UNKNOWN: 2, SILENCE: 3}

    # Each silence clip is a 1 s slice of a noise recording, from that split's own stretch of it.
    noise_dir = speechcommands_root / "_background_noise_"
    for split, (first, last) in {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}.items():
        dataset = datamodule.splits[split]
        for path, label in zip(dataset.paths, dataset.labels):
            if datamodule.classes[label] != SILENCE:
                continue
            _, recording, start = path.stem.split("-")
            start = int(start)
            noise = read_audio(noise_dir / f"{recording}.wav")
            assert first * len(noise) <= start and start + CLIP_SAMPLES <= last * len(noise)
            torch.testing.assert_close(read_audio(path), noise[start : start + CLIP_SAMPLES])


def test_missing_lists_and_listed_files_are_clear_errors(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "yes").mkdir()
    (root / "validation_list.txt").write_text("yes/gone.wav\n")
    (root / "testing_list.txt").write_text("")
    missing = r"validation_list.txt: 1 listed file\(s\) are not in the folder, e.g. yes/gone.wav"
    with pytest.raises(FileNotFoundError, match=missing):
        make_datamodule(tmp_path, root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="validation_list.txt not found: expected the Speech Commands v0.02"):
        make_datamodule(tmp_path, tmp_path / "empty")


@pytest.mark.parametrize("augment", ["light", "stream"])
def test_trains_on_the_twelve_class_task(tmp_path, speechcommands_root, augment):
    cfg = compose_train(
        tmp_path, "data=speechcommands", f"data.root={speechcommands_root}", "data.task=12",
        "data.silence_clips={train:4,val:2,test:2}", "trainer=debug", "logger=csv", f"augment={augment}",
    )  # fmt: skip
    assert 0.0 <= train(cfg) <= 1.0


def test_fitting_batches_come_from_the_device_copy_silence_included(tmp_path, speechcommands_root):
    datamodule = make_datamodule(tmp_path, speechcommands_root, "data.task=12", "data.silence_clips={train:4,val:2,test:2}")
    batches = datamodule.train_dataloader()
    assert isinstance(batches, DeviceBatches)
    labels = torch.cat([labels for _, labels in batches])
    assert sorted(labels.tolist()) == sorted(datamodule.splits["train"].labels)
    assert datamodule.classes.index(SILENCE) in labels


def test_a_broken_clip_is_named_before_training(tmp_path, speechcommands_root):
    root = tmp_path / "copy"
    shutil.copytree(speechcommands_root, root)
    (root / "yes" / "00000000_nohash_0.wav").write_bytes(b"")
    with pytest.raises(AudioError, match=r"yes/00000000_nohash_0.wav: .*empty"):
        make_datamodule(tmp_path, root)
    skipped = make_datamodule(tmp_path, root, "data.on_bad_file=skip", f"data.report_dir={tmp_path}")
    assert "yes/00000000_nohash_0.wav" not in names(skipped.splits["train"], root)
    assert "00000000_nohash_0.wav" in (tmp_path / "bad_files.csv").read_text()


def test_train_evaluate_and_predict_use_the_official_test_list(tmp_path, speechcommands_root):
    # All ask the data module what its test split is: the release's testing_list.txt, not the validation split.
    cfg = compose_train(
        tmp_path, "data=speechcommands", f"data.root={speechcommands_root}", "trainer.max_epochs=1",
        "logger=csv", "callbacks.last_checkpoint=null",
    )  # fmt: skip
    train(cfg)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["test_data"] == "the official test list (testing_list.txt)"
    cfg = compose_train(
        tmp_path / "evaluate", "data=speechcommands", f"data.root={speechcommands_root}",
        f"ckpt_path={record['best_checkpoint']}", config_name="evaluate",
    )  # fmt: skip
    metrics = evaluate(cfg)
    assert metrics["clips"] == len((speechcommands_root / "testing_list.txt").read_text().split())
    assert json.loads((tmp_path / "evaluate" / "run" / "metrics.json").read_text())["test_data"] == (
        "checkpoint on the official test list (testing_list.txt)"
    )
    # The folder has no sample_submission.csv: prediction answers the official test list's clips.
    cfg = compose_train(
        tmp_path / "predict", "data=speechcommands", f"data.root={speechcommands_root}",
        f"ckpt_path={record['best_checkpoint']}", f"output={tmp_path / 'submission.csv'}", config_name="predict",
    )  # fmt: skip
    submission = pd.read_csv(predict(cfg))
    assert sorted(submission.file_name) == sorted((speechcommands_root / "testing_list.txt").read_text().split())
