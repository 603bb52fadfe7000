"""The sliding-window detector, with a stub classifier that recognises tone bursts as keywords."""

import shutil
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from hydra import compose, initialize_config_dir

from speechcls.audio import SAMPLE_RATE, read_audio_blocks
from speechcls.detect import DETECTION_COLUMNS, detect
from speechcls.detector import Detector, Posteriors
from speechcls.config import CONFIG_DIR

CLASSES = ["_silence_", "_unknown_", "go", "yes"]
TONES = {"go": 1200.0, "yes": 800.0, "_unknown_": 500.0}  # _unknown_ words are tones too, and never fire
BURST_SECONDS = 0.4
AMPLITUDE = 0.5


class ToneClassifier(torch.nn.Module):
    """Scores (batch, len(CLASSES)) of 16 kHz windows: a word's tone wins where the window holds over 80 %
    of one burst of it (its share of the window's energy, whatever the level)."""

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        t = torch.arange(wave.shape[-1]) / SAMPLE_RATE
        scores = torch.zeros(len(wave), len(CLASSES))
        energy = wave.pow(2).sum(dim=1).clamp(min=1e-9)
        for word, frequency in TONES.items():
            projection = torch.stack([wave @ torch.cos(2 * np.pi * frequency * t), wave @ torch.sin(2 * np.pi * frequency * t)])
            held = 2 * projection.pow(2).sum(dim=0) / (energy * BURST_SECONDS * SAMPLE_RATE)
            scores[:, CLASSES.index(word)] = 50 * (held - 0.8)
        return scores


def bursts(events: list[tuple[float, str]], seconds: float, rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """`seconds` of faint noise with a BURST_SECONDS tone of each (time, word) of `events`."""
    wave = 0.005 * np.random.default_rng(seed).standard_normal(int(seconds * rate))
    for time, word in events:
        first = int(time * rate)
        t = np.arange(int(BURST_SECONDS * rate)) / rate
        wave[first : first + len(t)] += AMPLITUDE * np.sin(2 * np.pi * TONES[word] * t)
    return wave.astype(np.float32)


def detector(**changes) -> Detector:
    return Detector(ToneClassifier(), CLASSES, **{"hop": 1024, "threshold": 0.8, **changes})


def run(detector: Detector, path, block_seconds: float = 60.0) -> pd.DataFrame:
    return detector.detections(detector.posteriors(read_audio_blocks(path, block_seconds)))


EVENTS = [(3.0, "yes"), (6.0, "_unknown_"), (8.0, "go"), (14.0, "yes")]
KEYWORDS = [(time, word) for time, word in EVENTS if word in ("go", "yes")]


def assert_at_the_keywords(found: pd.DataFrame, tolerance: float = 0.0) -> None:
    """One detection per keyword burst, of its word, whose window holds the burst; none elsewhere."""
    assert list(found.word) == [word for _, word in KEYWORDS]
    for (time, _), start, end in zip(KEYWORDS, found.start, found.end):
        assert start <= time + tolerance and time + BURST_SECONDS <= end + tolerance


def test_detections_at_the_keywords_times_and_nowhere_else(tmp_path):
    path = tmp_path / "stream.wav"
    sf.write(path, bursts(EVENTS, 20.0), SAMPLE_RATE)
    found = run(detector(), path, block_seconds=3.7)  # blocks that cut windows and bursts
    assert_at_the_keywords(found)
    assert (found.score >= 0.8).all() and (found.end - found.start == 1.0).all()
    # The same windows whichever way the file is cut into blocks.
    whole = detector().posteriors(read_audio_blocks(path, 60.0))
    cut = detector().posteriors(read_audio_blocks(path, 3.7))
    np.testing.assert_array_equal(whole.starts, cut.starts)
    np.testing.assert_allclose(whole.probabilities, cut.probabilities, atol=1e-5)
    # The last window reaches the end of the file.
    assert whole.starts[-1] + 16000 >= 20 * SAMPLE_RATE > whole.starts[-1]


def test_the_refractory_time_suppresses_repeats(tmp_path):
    path = tmp_path / "stream.wav"
    sf.write(path, bursts(EVENTS, 20.0), SAMPLE_RATE)
    # Windows hold a whole burst for 0.6 s of starts: without a refractory time each burst fires repeatedly.
    repeated = run(detector(refractory_seconds=0.0), path)
    assert len(repeated) > 2 * len(KEYWORDS)
    assert set(repeated.word) == {"go", "yes"}
    assert_at_the_keywords(run(detector(refractory_seconds=1.0), path))


def test_per_keyword_thresholds(tmp_path):
    path = tmp_path / "stream.wav"
    sf.write(path, bursts(EVENTS, 20.0), SAMPLE_RATE)
    # No probability reaches 1.5: go never fires, yes fires as with one threshold for both.
    found = run(detector(threshold={"yes": 0.8, "go": 1.5}), path)
    with_one = run(detector(), path)
    assert list(found.word) == ["yes", "yes"]
    assert found.start.tolist() == with_one[with_one.word == "yes"].start.tolist()
    # A detection's word is the most probable of the keywords at or above their thresholds.
    probabilities = np.array([[0.1, 0.0, 0.3, 0.6], [0.1, 0.2, 0.3, 0.4]])  # _silence_, _unknown_, go, yes
    posteriors = Posteriors(np.array([0, 2 * SAMPLE_RATE]), probabilities, 3 * SAMPLE_RATE)
    thresholds = detector(threshold={"go": 0.25, "yes": 0.5}, smooth_seconds=0.0)
    assert thresholds.detections(posteriors).word.tolist() == ["yes", "go"]
    with pytest.raises(ValueError, match=r"missing \['go'\], not keywords \['no'\]"):
        detector(threshold={"yes": 0.8, "no": 0.5})


def test_a_detector_with_other_smoothing_scores_the_same_posteriors_as_one_built_with_it():
    probabilities = np.random.default_rng(0).dirichlet(np.ones(len(CLASSES)), size=40)
    base = detector(smooth_seconds=0.4)
    for seconds in (0.0, 0.2, 1.0):
        np.testing.assert_array_equal(
            base.with_smoothing(seconds).smoothed(probabilities), detector(smooth_seconds=seconds).smoothed(probabilities)
        )
    assert base.smooth_windows == detector(smooth_seconds=0.4).smooth_windows  # the original is unchanged
    assert not np.array_equal(base.smoothed(probabilities), base.with_smoothing(0.0).smoothed(probabilities))


def test_a_file_shorter_than_one_window(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, bursts([(0.05, "go")], 0.5), SAMPLE_RATE)
    posteriors = detector().posteriors(read_audio_blocks(path))
    assert len(posteriors.starts) == 1 and posteriors.starts[0] == -(SAMPLE_RATE - 8000) // 2  # centred
    found = detector().detections(posteriors)
    assert list(found.word) == ["go"] and (found.start[0], found.end[0]) == (0.0, 0.5)


def test_8_khz_stereo_input(tmp_path):
    path = tmp_path / "phone.wav"
    mono = bursts(EVENTS, 20.0, rate=8000)
    sf.write(path, np.stack([mono, mono], axis=1), 8000, subtype="PCM_16")
    assert_at_the_keywords(run(detector(), path, block_seconds=5.0))


def test_a_ten_minute_file_in_bounded_memory(tmp_path):
    path = tmp_path / "long.wav"
    events = [(float(time), "yes") for time in range(30, 600, 60)]
    sf.write(path, bursts(events, 600.0), SAMPLE_RATE, subtype="PCM_16")
    tracemalloc.start()
    found = run(detector(hop=8192, batch_size=256), path, block_seconds=10.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Decoding it whole would hold 600 s x 16 kHz float32 = 38 MB at once.
    assert peak < 8e6
    assert list(found.word) == ["yes"] * len(events)
    assert all(start <= time < end for start, end, (time, _) in zip(found.start, found.end, events))


def test_hop_must_fit_the_window():
    with pytest.raises(ValueError, match="hop must be between 1 and the window"):
        detector(hop=20000)


def compose_detect(tmp_path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("detect", [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / 'run'}", *overrides])


def test_detect_entry_point_with_a_checkpoint_and_its_onnx_export(tmp_path, tiny_run):
    from speechcls.checkpoints import resolve_checkpoint
    from speechcls.export import export

    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", bursts(EVENTS[:2], 8.0), SAMPLE_RATE)
    sf.write(folder / "sub" / "b.flac", bursts(EVENTS[:1], 4.0, rate=22050), 22050)
    (folder / "notes.txt").write_text("not audio")
    common = [f"input={folder}", f"ckpt_path={tiny_run}", "detector.threshold=0.0", "detector.refractory_seconds=0.5"]
    found = pd.read_csv(detect(compose_detect(tmp_path, *common)))
    assert list(found.columns) == DETECTION_COLUMNS
    assert set(found.file) == {str(folder / "a.wav"), str(folder / "sub" / "b.flac")}
    # Threshold 0: the best keyword fires at every window outside the refractory time.
    assert len(found[found.file == str(folder / "a.wav")]) == 14 and set(found.word) <= {"down", "go", "up"}

    model = export(resolve_checkpoint(tiny_run, tiny_run), tmp_path / "export")
    onnx = compose_detect(tmp_path, *common, f"ckpt_path={model}", f"output={tmp_path / 'onnx.csv'}")
    from_onnx = pd.read_csv(detect(onnx))
    pd.testing.assert_frame_equal(from_onnx.drop(columns="score"), found.drop(columns="score"))
    np.testing.assert_allclose(from_onnx.score, found.score, atol=1e-3)


def test_detect_uses_the_threshold_stored_with_the_model_unless_told_otherwise(tmp_path, tiny_run, capsys):
    from speechcls.checkpoints import resolve_checkpoint
    from speechcls.thresholds import store_threshold

    model = shutil.copytree(tiny_run, tmp_path / "model")
    sf.write(tmp_path / "a.wav", bursts(EVENTS[:2], 8.0), SAMPLE_RATE)
    # No probability reaches 1.5: with it stored, nothing fires; the command line's 0.0 fires everywhere.
    point = pd.Series({"threshold": 1.5, "frr": 1.0, "fa_per_hour": 0.0})
    store_threshold(resolve_checkpoint(model, model), point, 1.0, 10.0)
    common = [f"input={tmp_path / 'a.wav'}", f"ckpt_path={model}", "detector.refractory_seconds=0.5"]
    assert len(pd.read_csv(detect(compose_detect(tmp_path, *common)))) == 0
    assert "threshold 1.5000: stored with the model" in capsys.readouterr().out
    assert len(pd.read_csv(detect(compose_detect(tmp_path, *common, "detector.threshold=0.0")))) == 14
    assert "threshold 0.0000: detector.threshold" in capsys.readouterr().out
    # One per keyword (the tiny model's down, go and up): only up can fire, and does at every window.
    found = pd.read_csv(detect(compose_detect(tmp_path, *common, "detector.threshold={down:1.5,go:1.5,up:0.0}")))
    assert len(found) == 14 and set(found.word) == {"up"}
    assert "threshold per keyword down 1.5000, go 1.5000, up 0.0000: detector.threshold" in capsys.readouterr().out
