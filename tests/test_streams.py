"""Benchmark streams, the detector on them, and false-reject / false-accept rates."""

import functools
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from test_detect import CLASSES, ToneClassifier, bursts

from speechcls.audio import SAMPLE_RATE
from speechcls.detector import Detector
from speechcls.evaluate_streams import (
    FALSE_ACCEPT_COLUMNS, MISS_COLUMNS, det_curve, evaluate_streams, false_accepts, frr_at, missed_keywords, rates,
)  # fmt: skip
from speechcls.streams import NOISE, SPEECH, KeywordStream
from speechcls.checkpoints import resolve_checkpoint
from speechcls.thresholds import operating_point, threshold_file
from speechcls.synth.speech_set import SyntheticSpeechSet
from speechcls.config import CONFIG_DIR


@pytest.fixture(scope="module")
def tone_clips(tmp_path_factory):
    """1 s clips with a tone burst at varied offsets: 3 of each keyword, 4 of non-keyword speech."""
    folder = tmp_path_factory.mktemp("clips")
    keywords, speech = [], []
    for i in range(10):
        word = ["yes", "go", "_unknown_"][i % 3] if i < 9 else "_unknown_"
        path = folder / f"{i}.wav"
        sf.write(path, bursts([(0.1 + 0.05 * i, word)], 1.0, seed=i), SAMPLE_RATE)
        (speech.append(path) if word == "_unknown_" else keywords.append((path, word)))
    return keywords, speech


def test_a_stubbed_model_finds_the_keywords_where_the_stream_put_them_and_nothing_else(tone_clips):
    keywords, speech = tone_clips
    stream = KeywordStream(keywords, speech, snr_db=20.0, hours=0.02, block_slots=4, seed=3)
    truth = stream.truth()
    assert len(truth) == len(keywords) and sorted(truth.word) == sorted(word for _, word in keywords)
    assert stream.negative_hours >= 0.02 and (np.diff(truth.start) >= 2.0).all()
    detector = Detector(ToneClassifier(), CLASSES, hop=1024)
    posteriors = detector.posteriors(stream.blocks())
    assert posteriors.length == stream.samples
    found = detector.detections(posteriors)
    assert len(found) == len(truth)  # speech never fires, nor noise, nor a keyword twice
    for (_, clip), (_, detection) in zip(truth.iterrows(), found.iterrows()):
        assert detection.word == clip.word and detection.start < clip.end and detection.end > clip.start
    overall = rates(found, truth, stream.negative_hours).set_index("keyword").loc["all"]
    assert (overall.misses, overall.false_accepts) == (0, 0)


def test_streams_are_deterministic_and_snr_changes_only_the_clips_level(tone_clips):
    keywords, speech = tone_clips
    make = lambda snr, seed=0: KeywordStream(keywords, speech, snr_db=snr, hours=0.005, block_slots=2, seed=seed)  # noqa: E731
    stream = make(10)
    at_10, again, at_20 = (torch.cat(list(s.blocks())) for s in (stream, make(10), make(20)))
    assert torch.equal(at_10, again) and not torch.equal(at_10, torch.cat(list(make(10, seed=1).blocks())))
    pd.testing.assert_frame_equal(stream.truth(), make(20).truth())
    in_clip = torch.zeros(len(at_10), dtype=torch.bool)
    for slot in np.flatnonzero(stream.kind != 2):  # keyword and speech slots
        start = slot * stream.slot + stream.offset[slot]
        in_clip[start : start + SAMPLE_RATE] = True
    changed = at_10 != at_20
    assert not changed[~in_clip].any()  # the same noise everywhere else
    for start in stream.truth().start:
        assert changed[round(start * SAMPLE_RATE) : round(start * SAMPLE_RATE) + SAMPLE_RATE].any()


class MishearingToneClassifier(ToneClassifier):
    """Hears the `_unknown_` tone as go, go's as yes and yes's as `_unknown_`."""

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return super().forward(wave)[:, [0, 3, 1, 2]]  # CLASSES: _silence_, _unknown_, go, yes


def scored_stream(classifier: torch.nn.Module, tone_clips, **detector_options):
    """A short stream of the tone clips, a detector with `classifier` on it, its posteriors, its detections
    at a threshold, and its DET curve."""
    keywords, speech = tone_clips
    stream = KeywordStream(keywords, speech, snr_db=20.0, hours=0.02, block_slots=4, seed=3)
    detector = Detector(classifier, CLASSES, hop=1024, **detector_options)
    posteriors = detector.posteriors(stream.blocks())
    detections_at = functools.partial(detector.detections, posteriors)
    return stream, detector, posteriors, detections_at, det_curve(detections_at, stream.truth(), stream.negative_hours)


def test_false_accepts_name_what_the_stream_held_under_them(tone_clips):
    keywords, speech = tone_clips
    stream, _, _, detections_at, curve = scored_stream(MishearingToneClassifier(), tone_clips)
    said = [f"other{i}" for i in range(len(speech))]
    clips = {
        "keyword": pd.DataFrame({"word": [word for _, word in keywords], "file_name": [p.name for p, _ in keywords]}),
        "speech": pd.DataFrame({"word": said, "file_name": [path.name for path in speech]}),
    }
    false = false_accepts(detections_at, curve, stream, clips, targets=[1e6]).set_index("heard")
    # Every go clip is heard as yes, every speech clip as go (at a threshold this low, some twice); noise
    # and yes clips never fire.
    on_keywords, on_speech = false.loc[["keyword"]], false.loc[["speech"]]
    assert set(on_keywords.heard_file) == {path.name for path, word in keywords if word == "go"}
    assert set(on_keywords.heard_word) == {"go"} and set(on_keywords.word) == {"yes"}
    assert set(on_speech.heard_file) == {speech[clip].name for clip in stream.clip[stream.kind == SPEECH]}
    assert set(on_speech.word) == {"go"}
    said_in = dict(zip(clips["speech"].file_name, said))
    assert [said_in[name] for name in on_speech.heard_file] == on_speech.heard_word.tolist()
    assert set(false.index) == {"keyword", "speech"}
    # A window in a noise-only slot, or beside the clip of a speech slot, lies over noise.
    noise_slot, speech_slot = np.flatnonzero(stream.kind == NOISE)[0], np.flatnonzero(stream.kind == SPEECH)[0]
    starts = np.array([noise_slot, speech_slot]) * stream.slot / SAMPLE_RATE
    under = stream.under(starts, starts + 0.45)  # clips lie 0.5 s or more from their slot's start
    assert under.heard.tolist() == ["noise", "noise"] and under.clip_row.tolist() == [-1, -1]


def missed_clips(classifier: torch.nn.Module, tone_clips, **detector_options) -> pd.DataFrame:
    """`missed_keywords` of a detector with `classifier` on the short stream, at the lowest threshold."""
    stream, detector, posteriors, detections_at, curve = scored_stream(classifier, tone_clips, **detector_options)
    files = pd.DataFrame({"file_name": [path.name for path, _ in tone_clips[0]]})
    return missed_keywords(detections_at, curve, stream, files, detector, posteriors, targets=[1e6])


def test_misses_say_which_clips_were_lost_and_why(tone_clips):
    keywords, _ = tone_clips
    word_of = {path.name: word for path, word in keywords}
    assert missed_clips(ToneClassifier(), tone_clips).empty  # every clip found: nothing listed
    # Heard as another keyword (go as yes) or as `_unknown_` (yes): every clip lost, for its own reason.
    lost = missed_clips(MishearingToneClassifier(), tone_clips).set_index("file_name")
    assert set(lost.columns) == set(MISS_COLUMNS) - {"model", "snr_db", "channel", "file_name"}
    assert sorted(lost.index) == sorted(word_of) and (lost.word == lost.index.map(word_of)).all()
    go, yes = lost[lost.word == "go"], lost[lost.word == "yes"]
    assert (go.why == "another keyword").all() and (go.top_word == "yes").all() and (go.top_score > 0.9).all()
    assert (yes.why == "below threshold").all() and (yes.word_score < yes.threshold).all()
    # Heard right while the first detection's refractory period lasts: all but the first held back.
    held = missed_clips(ToneClassifier(), tone_clips, refractory_seconds=1e4)
    assert len(held) == len(keywords) - 1 and (held.why == "held back").all() and (held.top_word == held.word).all()
    assert (held.word_score > 0.9).all()


@pytest.mark.parametrize("channel", ["phone-gsm", "phone-mp3-v9.0"])
def test_a_stream_through_a_phone_line_is_band_limited(tone_clips, channel):
    pytest.importorskip("pedalboard")
    keywords, speech = tone_clips
    make = lambda channel: KeywordStream(keywords, speech, snr_db=10, hours=0.005, channel=channel)  # noqa: E731
    wideband, phone = (torch.cat(list(make(name).blocks())) for name in ("none", channel))
    assert len(phone) == len(wideband) and torch.isfinite(phone).all()

    def share_above_4_khz(wave):
        power = torch.fft.rfft(wave).abs().pow(2)
        return float(power[torch.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE) > 4000].sum() / power.sum())

    # An 8 kHz line keeps next to nothing above 4 kHz (the resampler's leakage), 15 dB under the wideband share.
    assert share_above_4_khz(phone) < 1e-4 and share_above_4_khz(phone) < share_above_4_khz(wideband) / 30


def test_an_unknown_channel_is_named():
    pytest.importorskip("pedalboard")
    with pytest.raises(ValueError, match="channel 'radio': expected none, phone-gsm or phone-mp3-v<quality>"):
        KeywordStream([("x.wav", "yes")], [], snr_db=10, speech_probability=0, channel="radio")


TRUTH = pd.DataFrame({"start": [10.0, 20.0, 30.0, 40.0], "end": [11.0, 21.0, 31.0, 41.0], "word": ["yes", "yes", "go", "go"]})
# start, word, score: a hit, a repeat of it, a hit at 0.6, a hit at 0.7, the wrong word over a keyword, two
# detections over no keyword.
SCORED = pd.DataFrame(
    [(9.5, "yes", 0.9), (10.6, "yes", 0.95), (19.8, "yes", 0.6), (29.5, "go", 0.7), (39.6, "yes", 0.85),
     (100.0, "go", 0.99), (200.0, "go", 0.5)],
    columns=["start", "word", "score"],
).assign(end=lambda table: table.start + 1.0)  # fmt: skip


def test_rates_on_a_hand_made_table():
    curve = det_curve(lambda threshold: SCORED[SCORED.score >= threshold], TRUTH, 2.0, [0.5, 0.8, 0.95, 1.0])
    by = curve.set_index(["threshold", "keyword"])
    expected = {  # (misses, false accepts) per threshold and keyword
        (0.5, "all"): (1, 3), (0.5, "yes"): (0, 1), (0.5, "go"): (1, 2),
        (0.8, "all"): (3, 2), (0.8, "yes"): (1, 1), (0.8, "go"): (2, 1),
        (0.95, "all"): (3, 1), (0.95, "yes"): (1, 0), (0.95, "go"): (2, 1),
        (1.0, "all"): (4, 0), (1.0, "yes"): (2, 0), (1.0, "go"): (2, 0),
    }  # fmt: skip
    for key, (misses, false) in expected.items():
        row = by.loc[key]
        clips = 4 if key[1] == "all" else 2
        assert (row.clips, row.misses, row.false_accepts) == (clips, misses, false), key
        assert row.frr == misses / clips and row.fa_per_hour == false / 2.0
    table = frr_at(curve).set_index(["keyword", "fa_per_hour_target"])
    assert tuple(table.loc[("all", 0.5)]) == (0.75, 0.95)
    assert tuple(table.loc[("all", 1.0)]) == (0.75, 0.8)
    assert tuple(table.loc[("all", 5.0)]) == (0.25, 0.5)
    assert tuple(table.loc[("yes", 0.5)]) == (0.0, 0.5)
    assert tuple(table.loc[("go", 0.5)]) == (1.0, 0.8)  # every threshold that low misses both: the first


def test_evaluate_streams_writes_the_tables_the_curve_and_tensorboard(tmp_path, tiny_run):
    root = SyntheticSpeechSet(
        words=("yes", "go", "bed"), clips_per_word=4, test_clips_per_word=2, other_words=("apple",),
        other_clips_per_word=4, other_test_clips_per_word=2, noise_files=1, noise_seconds=12.0, num_workers=2,
    ).generate(tmp_path / "set")  # fmt: skip
    model = shutil.copytree(tiny_run, tmp_path / "model")  # thresholds are stored beside its checkpoints
    overrides = [
        f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / 'run'}", f"data.root={root}", "data.synthesizer=null",
        "data.cache=false", "data.silence_clips={train:2,val:1,test:1}", f"ckpt_path=['{model}','{model}:last']",
        "snr_db=[10,0]", "channels=[none,phone-gsm]", "stream.hours=0.005", "smooth_seconds=[0.13,0.4]",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        table = evaluate_streams(compose("evaluate_streams", overrides))
    # 2 models, each also smoothed over one window (0.4 s is the detector's own), x 2 SNRs x 2 channels x
    # (2 keywords + all) x 3 target rates.
    assert set(table.model) == {str(model), f"{model}:last", f"{model}, smooth 0.13 s", f"{model}:last, smooth 0.13 s"}
    assert len(table) == 4 * 2 * 2 * 3 * 3 and set(table.keyword) == {"yes", "go", "all"}
    assert set(table.channel) == {"none", "phone-gsm"}
    assert table.frr.between(0, 1).all()
    run = tmp_path / "run"
    assert (run / "det_curve.png").stat().st_size > 0 and list((run / "tensorboard").glob("events.*"))
    assert list(pd.read_csv(run / "false_accepts.csv").columns) == FALSE_ACCEPT_COLUMNS
    assert list(pd.read_csv(run / "misses.csv").columns) == MISS_COLUMNS
    curves = pd.read_csv(run / "det.csv")
    assert set(curves.snr_db) == {10, 0} and set(curves.channel) == {"none", "phone-gsm"}
    # Each model's threshold for 1 false accept an hour at 10 dB is stored beside it.
    stored_any = False
    for spec, checkpoint in ((str(model), resolve_checkpoint(model, model)), (f"{model}:last", model / "checkpoints" / "last.ckpt")):
        curve = curves[(curves.model == spec) & (curves.snr_db == 10) & (curves.keyword == "all")]
        point = operating_point(curve, 1.0)
        if point is None:  # no threshold is that strict on this tiny stream: nothing stored
            assert not threshold_file(checkpoint).exists()
            continue
        stored = json.loads(threshold_file(checkpoint).read_text())
        assert stored["threshold"] == pytest.approx(point.threshold, rel=1e-4) and stored["fa_per_hour"] <= 1.0
        stored_any = True
    assert stored_any
