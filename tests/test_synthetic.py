import json
import multiprocessing
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from hydra.utils import instantiate
from omegaconf import OmegaConf

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE
from speechcls.data import synthetic
from speechcls.data.synthetic import MANIFEST, SyntheticSpeechSet

TINY_WORDS = ("up", "sheila", "visual")


def tiny(**changes) -> SyntheticSpeechSet:
    parameters = dict(words=TINY_WORDS, clips_per_word=3, test_clips_per_word=2, num_workers=2)
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


def test_kaggle_layout_of_balanced_16k_clips(tiny_root):
    train = pd.read_csv(tiny_root / "train.csv")
    answers = pd.read_csv(tiny_root / "test_labels.csv")
    submission = pd.read_csv(tiny_root / "sample_submission.csv")
    for table in (train, submission):
        assert list(table.columns) == ["file_name", "target"]
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
    target = "speechcls.data.synthetic.SyntheticSpeechSet"
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
    synthetic.main(["--root", str(root), "--words", "up,down", "--clips-per-word", "2", "--test-clips-per-word", "1"])
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
