"""The bad-input battery: unusual but valid audio is handled right, broken input gets one clear message."""

import logging
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from conftest import TINY_CLASSES, compose_train
from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE, AudioError, load_clip, read_audio
from speechcls.data.tables import TableError, read_table
from speechcls.data.file_checks import audio_problem
from speechcls.features import LogMel

TONE_HZ = 440.0


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    wave = 0.5 * np.sin(2 * np.pi * TONE_HZ * np.arange(int(seconds * rate)) / rate)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def write_valid(path, subtype="PCM_16", rate=SAMPLE_RATE, channels=1, seconds=0.5):
    sf.write(path, tone(seconds, rate, channels), rate, subtype=subtype)
    return path


def write_broken(path, kind):
    """A broken file of `kind`; returns the problem `audio_problem` must report."""
    if kind == "missing":
        return "file not found"
    if kind == "zero-byte":
        path.write_bytes(b"")
        return r"empty file \(0 bytes\)"
    if kind == "not audio":
        path.write_text("file_name,target\nthis is a CSV named .wav\n")
        return r"not readable as audio \(Format not recognised"
    whole = write_valid(path).read_bytes()
    if kind == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
        return r"truncated: the header declares 16000 bytes of audio, the file holds 79\d\d"
    if kind == "header only":
        path.write_bytes(whole[:44])
        return r"truncated: the header declares 16000 bytes of audio, the file holds 0"
    value = {"NaN": np.nan, "inf": np.inf}[kind]
    wave = tone(0.5, SAMPLE_RATE).astype(np.float32)
    wave[100] = value
    sf.write(path, wave, SAMPLE_RATE, subtype="FLOAT")
    return "contains NaN or infinite samples"


BROKEN = ["missing", "zero-byte", "truncated", "header only", "not audio", "NaN", "inf"]
UNUSUAL = {
    "8-bit": dict(subtype="PCM_U8"),
    "24-bit": dict(subtype="PCM_24"),
    "32-bit float": dict(subtype="FLOAT"),
    "stereo": dict(channels=2),
    **{f"{rate} Hz": dict(rate=rate) for rate in (8000, 22050, 32000, 44100, 48000)},
}


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_audio_is_named_with_its_problem(tmp_path, kind):
    path = tmp_path / "clip.wav"
    assert re.fullmatch(write_broken(path, kind) + ".*", audio_problem(path))


@pytest.mark.parametrize("name", UNUSUAL)
def test_unusual_formats_rates_and_channels_decode_to_the_same_tone(tmp_path, name):
    path = write_valid(tmp_path / "clip.wav", **UNUSUAL[name])
    assert audio_problem(path) is None
    wave = read_audio(path)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(wave.numel() - SAMPLE_RATE // 2) <= 1
    spectrum = torch.fft.rfft(wave).abs()
    assert float(spectrum.argmax()) * SAMPLE_RATE / wave.numel() == pytest.approx(TONE_HZ, abs=2)
    assert float(wave.abs().max()) == pytest.approx(0.5, abs=0.03)


def test_a_long_clip_keeps_its_loudest_second(tmp_path):
    rate = 16000
    wave = np.zeros(10 * rate, np.float32)
    wave[6 * rate : 7 * rate] = tone(1.0, rate)
    sf.write(tmp_path / "long.wav", wave, rate)
    assert audio_problem(tmp_path / "long.wav") is None
    clip = load_clip(tmp_path / "long.wav")
    assert clip.shape == (CLIP_SAMPLES,)
    torch.testing.assert_close(clip, torch.from_numpy(wave[6 * rate : 7 * rate]), atol=1e-4, rtol=0)  # 16-bit


def test_a_very_short_clip_is_centred_in_silence(tmp_path):
    sf.write(tmp_path / "short.wav", np.full(100, 0.25, np.float32), SAMPLE_RATE)
    assert audio_problem(tmp_path / "short.wav") is None
    clip = load_clip(tmp_path / "short.wav")
    start = (CLIP_SAMPLES - 100) // 2
    assert clip.shape == (CLIP_SAMPLES,) and clip.abs().sum() == pytest.approx(25.0)
    assert (clip[start : start + 100] == 0.25).all()


def test_a_silent_clip_gives_finite_features(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(SAMPLE_RATE, np.int16), SAMPLE_RATE, subtype="PCM_16")
    assert audio_problem(tmp_path / "silent.wav") is None
    features = LogMel()(torch.stack([load_clip(tmp_path / "silent.wav"), torch.randn(CLIP_SAMPLES)]))
    assert torch.isfinite(features).all()


# Data module: the files of every table are checked once, up front.


def kaggle_folder(root, broken=(), sample=None):
    """Valid tones (two per class and kind) plus `broken` files in train.csv, in the Kaggle layout."""
    audio = root / "audio_files"
    audio.mkdir(parents=True)
    rows, problems = [], {}
    for i, (name, options) in enumerate(UNUSUAL.items()):
        for copy in range(2):
            file = f"{name.replace(' ', '_')}_{copy}.wav"
            write_valid(audio / file, **options)
            rows.append((file, TINY_CLASSES[i % 2]))
    for i, kind in enumerate(broken):
        file = f"broken_{kind.replace(' ', '_')}.wav"
        problems[file] = write_broken(audio / file, kind)
        rows.insert(3 * i + 1, (file, TINY_CLASSES[0]))
    pd.DataFrame(rows, columns=["file_name", "target"]).to_csv(root / "train.csv", index=False)
    sample = sample or [rows[0][0]]
    pd.DataFrame({"file_name": sample, "target": TINY_CLASSES[0]}).to_csv(root / "sample_submission.csv", index=False)
    return problems


def datamodule(tmp_path, root, *overrides):
    cfg = compose_train(tmp_path, "data=kaggle", f"data.root={root}", "data.cache=false", *overrides)
    return instantiate(cfg.data)


def test_unusual_valid_audio_trains_as_fixed_length_finite_clips(tmp_path):
    kaggle_folder(tmp_path / "data")
    data = datamodule(tmp_path, tmp_path / "data", "data.cache=true")
    data.setup("fit")
    for split in ("train", "val"):
        waves = torch.stack([data.splits[split][i][0] for i in range(len(data.splits[split]))])
        assert waves.shape[1] == CLIP_SAMPLES and torch.isfinite(LogMel()(waves)).all()
    assert len(data.splits["train"]) + len(data.splits["val"]) == 2 * len(UNUSUAL)


def test_bad_files_stop_before_training_with_one_message(tmp_path):
    kaggle_folder(tmp_path / "data", broken=BROKEN)
    with pytest.raises(AudioError) as error:
        datamodule(tmp_path, tmp_path / "data").setup("fit")
    first = tmp_path / "data" / "audio_files" / "broken_missing.wav"
    assert str(error.value) == (
        f"{tmp_path / 'data' / 'train.csv'} line 3: {first}: file not found (and {len(BROKEN) - 1} more bad "
        "file(s) in that table); fix or remove them, or set data.on_bad_file=skip to leave them out"
    )


def test_skipped_bad_files_are_reported_and_left_out(tmp_path, caplog):
    problems = kaggle_folder(tmp_path / "data", broken=BROKEN)
    data = datamodule(tmp_path, tmp_path / "data", "data.on_bad_file=skip")
    with caplog.at_level(logging.WARNING):
        data.setup("fit")
    report_path = tmp_path / "run" / "bad_files.csv"
    train_csv = tmp_path / "data" / "train.csv"
    assert f"left out {len(BROKEN)} bad audio file(s) of {train_csv}; see {report_path}" in caplog.text
    report = pd.read_csv(report_path)
    assert list(report.columns) == ["csv", "line", "file", "problem"]
    assert sorted(report["file"].map(lambda f: f.rsplit("/", 1)[1])) == sorted(problems)
    for row in report.itertuples():
        assert re.fullmatch(problems[row.file.rsplit("/", 1)[1]] + ".*", row.problem)
        assert read_table(train_csv)["file_name"][row.line - 2] in row.file
    used = {path.name for split in data.splits.values() for path in split.paths}
    assert used.isdisjoint(problems) and len(used) == 2 * len(UNUSUAL)


def test_sample_submission_with_a_missing_file_is_an_error_even_when_skipping(tmp_path):
    kaggle_folder(tmp_path / "data", sample=["8-bit_0.wav", "ghost.wav"])
    data = datamodule(tmp_path, tmp_path / "data", "data.on_bad_file=skip")
    with pytest.raises(AudioError, match=(
        r"sample_submission.csv line 3: .*/audio_files/ghost.wav: file not found; every row of "
        r"sample_submission.csv needs a prediction, so bad files cannot be skipped"
    )):  # fmt: skip
        data.predict_dataloader()


def test_a_label_the_checkpoint_does_not_know_names_its_line(tmp_path):
    kaggle_folder(tmp_path / "data")
    (tmp_path / "data" / "test_labels.csv").write_text("file_name,target\n8-bit_0.wav,down\n8-bit_1.wav,cat\n")
    data = datamodule(tmp_path, tmp_path / "data", "+data.classes=[down,go,up]", "data.test_csv=test_labels.csv")
    with pytest.raises(TableError, match=re.escape(
        "test_labels.csv: label(s) ['cat'] on line(s) 3 are not among the model's 3 classes ['down', 'go', 'up']"
    )):  # fmt: skip
        data.test_split()


def test_a_data_root_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"data root {tmp_path / 'nowhere'} does not exist"):
        datamodule(tmp_path, tmp_path / "nowhere").setup("fit")


def test_an_unknown_on_bad_file_choice_is_rejected(tmp_path):
    with pytest.raises(InstantiationException, match=r"on_bad_file='ignore': expected one of \('error', 'skip'\)"):
        datamodule(tmp_path, tmp_path, "data.on_bad_file=ignore")


# Tables.

TABLES = {
    "missing file_name column": ("name,target\na.wav,up\n", "missing column(s) ['file_name']; found ['name', 'target']"),
    "missing target column": ("file_name,label\na.wav,up\n", "missing column(s) ['target']"),
    "duplicate file names": ("file_name,target\na.wav,up\nb.wav,up\na.wav,go\n", "duplicate file name 'a.wav' on lines 2, 4"),
    "empty label": ("file_name,target\na.wav,up\nb.wav,\n", "empty 'target' on line(s) 3"),
    "empty CSV": ("", "empty CSV (expected a header with 'file_name')"),
    "header only": ("file_name,target\n", "no rows"),
}  # fmt: skip


@pytest.mark.parametrize("case", TABLES)
def test_malformed_tables_name_the_file_and_row(tmp_path, case):
    text, message = TABLES[case]
    (tmp_path / "train.csv").write_text(text)
    with pytest.raises(TableError, match=re.escape(f"{tmp_path / 'train.csv'}: {message}")):
        read_table(tmp_path / "train.csv")
