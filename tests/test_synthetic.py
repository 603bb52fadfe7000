import json
import multiprocessing
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from conftest import compose_train, setup_datamodule
from hydra.utils import instantiate
from omegaconf import OmegaConf

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE
from speechcls.data.tables import TableError
from speechcls.data.twelve_class import KEYWORDS, SILENCE, UNKNOWN
from speechcls.evaluate import evaluate
from speechcls.synth import speech_set as synthetic
from speechcls.synth.speech_set import MANIFEST, SyntheticSpeechSet
from speechcls.train import train

TINY_WORDS = ("up", "sheila", "visual")


def tiny(**changes) -> SyntheticSpeechSet:
    parameters = dict(words=TINY_WORDS, clips_per_word=3, test_clips_per_word=2, other_words=(), noise_files=0, num_workers=2)
    return SyntheticSpeechSet(**{**parameters, **changes})


def entries(folder: Path) -> list[str]:
    """The folder's entries besides generation locks (empty files that persist by design)."""
    return sorted(path.name for path in folder.iterdir() if path.suffix != ".lock")


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return tiny().generate(tmp_path_factory.mktemp("synthetic") / "set")


def test_same_parameters_give_the_same_bytes_for_any_worker_count(tmp_path, tiny_root):
    again = tiny(num_workers=1).generate(tmp_path / "again")
    assert folder_bytes(again) == folder_bytes(tiny_root)
    other_seed = tiny(seed=1).generate(tmp_path / "other")
    assert folder_bytes(other_seed)["train.csv"] != folder_bytes(tiny_root)["train.csv"]


# One utterance of caleb (a "klatt 6" voice, whose breath noise comes from libc's rand()) after
# argv[1] calls of rand(), in a fresh process, as raw float32 bytes.
CALEB_AFTER_RAND_CALLS = """
import ctypes, sys
from speechcls.synth import speech_set as synthetic
synthetic._start_worker()
for _ in range(int(sys.argv[1])):
    ctypes.CDLL(None).rand()
wave = synthetic._espeak.speak("doctor", "en-gb-x-rp+caleb", rate=120, pitch=50, pitch_range=18, volume=111, seed=5)
sys.stdout.buffer.write(wave.numpy().tobytes())
"""


def test_a_klatt_voice_does_not_depend_on_what_called_rand_before_it():
    # A parent's calls reach the workers it forks, so they changed a set's files from one generation to the next.
    first, after_other_calls = (
        subprocess.run([sys.executable, "-c", CALEB_AFTER_RAND_CALLS, str(calls)], check=True, capture_output=True).stdout
        for calls in (0, 3)
    )
    assert len(first) > 0 and first == after_other_calls


def test_kaggle_layout_of_balanced_16k_clips(tiny_root):
    train = pd.read_csv(tiny_root / "train.csv")
    answers = pd.read_csv(tiny_root / "test_labels.csv")
    submission = pd.read_csv(tiny_root / "sample_submission.csv")
    assert list(train.columns) == ["file_name", "target", "engine"] and set(train.engine) == {"espeak"}
    assert list(submission.columns) == ["file_name", "target"]
    assert list(answers.columns) == ["file_name", "target", "engine", "voice", "channel"]
    clips = pd.read_csv(tiny_root / "clips.csv").set_index("file_name")
    assert answers.set_index("file_name")[["engine", "voice"]].equals(clips.loc[answers.file_name, ["engine", "voice"]])
    assert set(answers.engine) == {"espeak"} and set(answers.channel) == {"none"}
    assert list(submission.file_name) == list(answers.file_name)
    assert set(submission.target) == {TINY_WORDS[0]}
    assert Counter(train.target) == {word: 3 for word in TINY_WORDS}
    assert Counter(answers.target) == {word: 2 for word in TINY_WORDS}
    listed = set(train.file_name) | set(answers.file_name)
    assert len(listed) == 15
    assert {path.name for path in (tiny_root / "audio_files").iterdir()} == listed
    for name in listed:
        info = sf.info(tiny_root / "audio_files" / name)
        assert (info.samplerate, info.channels, info.frames) == (SAMPLE_RATE, 1, CLIP_SAMPLES)
        assert info.subtype == "PCM_16"


def test_test_split_is_spoken_by_held_out_voices(tiny_root):
    clips = pd.read_csv(tiny_root / "clips.csv")
    variants = clips.voice.str.split("+").str[1]
    train_variants = set(variants[clips.split == "train"])
    test_variants = set(variants[clips.split == "test"])
    held_out = set(json.loads((tiny_root / MANIFEST).read_text())["parameters"]["test_variants"])
    assert test_variants <= held_out
    assert train_variants.isdisjoint(held_out)


def test_ensure_reuses_a_matching_set_and_replaces_a_different_one(tmp_path):
    root = tiny(words=("up", "down")).ensure(tmp_path / "set")
    manifest = root / MANIFEST
    first = manifest.stat().st_mtime_ns
    tiny(words=("up", "down"), num_workers=1).ensure(root)
    assert manifest.stat().st_mtime_ns == first
    tiny(words=("up", "down"), seed=3).ensure(root)
    assert json.loads(manifest.read_text())["parameters"]["seed"] == 3
    assert len(list((root / "audio_files").iterdir())) == 10
    assert entries(tmp_path) == ["set"]


def test_a_run_started_during_a_generation_waits_for_it_and_reuses_its_set(tmp_path, tiny_root):
    root = tmp_path / "set"
    lock = synthetic.generation_lock(root)
    lock.acquire()
    waiting = multiprocessing.get_context("fork").Process(target=tiny().ensure, args=(root,))
    waiting.start()
    waiting.join(timeout=1.0)
    assert waiting.is_alive() and entries(tmp_path) == []  # blocked, has not started its own set
    shutil.copytree(tiny_root, root)  # what the lock holder generates
    written = (root / MANIFEST).stat().st_mtime_ns
    lock.release()
    waiting.join(timeout=60)
    assert waiting.exitcode == 0
    assert (root / MANIFEST).stat().st_mtime_ns == written  # reused, not generated again


def test_a_hydra_built_synthesizer_matches_its_manifest(tmp_path):
    target = "speechcls.synth.speech_set.SyntheticSpeechSet"
    config = OmegaConf.create({"_target_": target, "words": ["up"], "snr_db": [10, 20]})
    synthesizer = instantiate(config)
    assert synthesizer.snr_db == (10, 20)
    assert synthesizer.manifest() == SyntheticSpeechSet(words=("up",), snr_db=(10, 20)).manifest()


def test_an_interrupted_generation_leaves_no_set_that_looks_complete(tmp_path, monkeypatch):
    root = tmp_path / "set"
    leftover = tmp_path / "set.tmp-1"
    (leftover / "audio_files").mkdir(parents=True)
    render = synthetic._render_clip

    def crash_on_visual(synthesizer, engine, word, *args):
        if word == "visual":
            raise RuntimeError("worker died")
        return render(synthesizer, engine, word, *args)

    monkeypatch.setattr(synthetic, "_render_clip", crash_on_visual)
    with pytest.raises(RuntimeError, match="worker died"):
        tiny().ensure(root)
    assert entries(tmp_path) == []

    tiny(words=("up",)).ensure(root)
    with pytest.raises(RuntimeError, match="worker died"):
        tiny().ensure(root)  # a failed replacement keeps the previous, still consistent set
    assert json.loads((root / MANIFEST).read_text())["parameters"]["words"] == ["up"]

    monkeypatch.setattr(synthetic, "_render_clip", render)
    tiny().ensure(root)
    assert len(pd.read_csv(root / "train.csv")) == 9
    assert entries(tmp_path) == ["set"]


def test_cli_writes_the_requested_set(tmp_path, capsys):
    root = tmp_path / "cli"
    counts = ["--clips-per-word", "2", "--test-clips-per-word", "1", "--other-words", ""]
    synthetic.main(["--root", str(root), "--words", "up,down", *counts])
    assert "4 train + 2 test clips" in capsys.readouterr().out
    assert Counter(pd.read_csv(root / "train.csv").target) == {"up": 2, "down": 2}


def test_unknown_words_and_overlapping_voices_are_rejected():
    with pytest.raises(ValueError, match="unknown words.*'upp'"):
        SyntheticSpeechSet(words=["upp"])
    with pytest.raises(ValueError, match="m1"):
        SyntheticSpeechSet(test_variants=["m1"])


def test_a_folder_that_is_not_a_synthetic_set_is_never_replaced(tmp_path):
    root = tmp_path / "my_download"
    root.mkdir()
    (root / "train.csv").write_text("file_name,target\n")
    with pytest.raises(FileExistsError, match="not a synthetic set, refusing to replace it"):
        SyntheticSpeechSet(words=["yes"], clips_per_word=1, test_clips_per_word=1).ensure(root)
    assert (root / "train.csv").is_file()


@pytest.fixture(scope="module")
def twelve_class_root(tmp_path_factory) -> Path:
    return SyntheticSpeechSet(
        words=("yes", "no", "bed", "cat"), clips_per_word=5, test_clips_per_word=2, other_words=("apple", "water"),
        other_clips_per_word=5, other_test_clips_per_word=2, noise_files=2, noise_seconds=12.0, num_workers=2,
    ).generate(tmp_path_factory.mktemp("twelve") / "set")  # fmt: skip


def test_twelve_class_task_on_the_built_in_set(tmp_path, twelve_class_root, monkeypatch):
    """Keywords keep their clips; _unknown_ draws from the other Speech Commands words and the set's other
    English words (unknown_words.csv), _silence_ slices the set's own noise recordings, per split."""
    root = twelve_class_root
    monkeypatch.chdir(tmp_path)  # silence written under a relative folder
    assert sorted(path.name for path in (root / "_background_noise_").iterdir()) == ["noise_0.wav", "noise_1.wav"]
    assert set(pd.read_csv(root / "train.csv").target) == {"yes", "no", "bed", "cat"}  # the 35-word task unchanged
    datamodule = setup_datamodule(
        tmp_path, "synthetic", root, "data.task=12", "data.unknown_clips={train:null,val:null,test:5}",
        "data.silence_clips={train:6,val:2,test:3}", "data.silence_dir=silence",
    )  # fmt: skip
    assert datamodule.classes == sorted([*KEYWORDS, UNKNOWN, SILENCE])
    words = pd.read_csv(root / "clips.csv").set_index("file_name").target
    counts, unknown_words = {}, {}
    for split, dataset in datamodule.splits.items():
        targets = [datamodule.classes[label] for label in dataset.labels]
        counts[split] = Counter(targets)
        unknown_words[split] = {words[path.name] for path, target in zip(dataset.paths, targets) if target == UNKNOWN}
    # Stratified 80/20 of 5 clips a word: 4 train, 1 validation; the test split is the held-out voices'.
    assert counts["train"] == {"yes": 4, "no": 4, UNKNOWN: 16, SILENCE: 6}
    assert counts["val"] == {"yes": 1, "no": 1, UNKNOWN: 4, SILENCE: 2}
    assert counts["test"] == {"yes": 2, "no": 2, UNKNOWN: 5, SILENCE: 3}
    assert unknown_words["train"] == {"bed", "cat", "apple", "water"}
    assert unknown_words["test"] <= {"bed", "cat", "apple", "water"}
    # The table keeps the word each clip says beside its 12-class target (the false-accept report's words).
    said = datamodule.table.dropna(subset=["word"])
    assert said.word.tolist() == [words[Path(name).name] for name in said.file_name]
    assert set(said.target[~said.word.isin(KEYWORDS)]) == {UNKNOWN}
    assert len(said) == (datamodule.table.target != SILENCE).sum()  # only silence says no word
    val = datamodule.splits["val"]
    silence = [path for path, label in zip(val.paths, val.labels) if label == datamodule.classes.index(SILENCE)]
    assert all(path.is_file() and path.is_relative_to(tmp_path / "silence") for path in silence)


def test_train_and_evaluate_the_twelve_class_task_on_the_built_in_set(tmp_path, twelve_class_root):
    task = [
        f"data.root={twelve_class_root}", "data.synthesizer=null", "data.task=12", "data.silence_clips={train:6,val:2,test:3}",
        "data.unknown_clips={train:8,val:null,test:5}",
    ]  # fmt: skip
    train(compose_train(tmp_path, *task, "trainer.max_epochs=1", "logger=csv"))
    cfg = compose_train(tmp_path / "eval", *task, f"ckpt_path={tmp_path / 'run'}", config_name="evaluate")
    evaluate(cfg)
    report = pd.read_csv(tmp_path / "eval" / "run" / "classification_report.csv").set_index("class")
    assert len(report) == 12 and dict(report.support[report.support > 0]) == {"yes": 2, "no": 2, "_unknown_": 5, "_silence_": 3}


def test_an_unknown_csv_without_a_train_or_test_split_is_named(tmp_path, twelve_class_root):
    bad = tmp_path / "unknown.csv"
    table = pd.read_csv(twelve_class_root / "unknown_words.csv")
    table.assign(split=["train"] * (len(table) - 1) + ["val"]).to_csv(bad, index=False)
    with pytest.raises(TableError, match=rf"unknown.csv: split must be train or test \(line\(s\) {len(table) + 1}\)"):
        setup_datamodule(tmp_path, "synthetic", twelve_class_root, "data.task=12", f"data.unknown_csv={bad}")
