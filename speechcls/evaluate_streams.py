"""False rejects at a given false-accept rate on long audio: `python -m speechcls.evaluate_streams`.

    python -m speechcls.evaluate_streams ckpt_path=[RUN_A,RUN_B] snr_db=[10,0]

Runs the detector (`speechcls.detector`) of each model over the benchmark streams of each SNR and channel
(`speechcls.streams`, made from the data set's held-out test clips of the 12-class task; `channels`: none,
or phone lines at 8 kHz with a codec; `data=synthetic_voices` adds the neural engine's `_unknown_` speech
and keywords) and scores
the detections at every threshold of a grid against the streams' ground truth:

- a detection is a hit when its window overlaps a keyword clip of the same word that no earlier
  detection hit; one overlapping an already hit clip of its word is a repeat and ignored; every other
  detection is a false accept (also one of the wrong word over a keyword);
- false-reject rate (FRR): keyword clips not hit / keyword clips;
- false accepts per hour (FA/h): false accepts / hours of stream outside the keyword clips.

Per keyword the rates count that word's clips and false accepts. The FRR at a target FA/h is the lowest
FRR of the thresholds whose FA/h is at most the target. Writes into the run directory kws_metrics.csv
(FRR at 0.5, 1 and 5 FA/h per model, SNR, channel and keyword, with the threshold), det.csv (every
threshold's rates), false_accepts.csv (each model's false accepts at its overall thresholds for those
rates, with what the stream held under each: a keyword of another word, `_unknown_` speech and the word it
says, or noise only), misses.csv (the keyword clips not hit at those thresholds, with the scores they got
and why they were lost), det_curve.png (FRR against FA/h, one panel per SNR and channel, one line per model)
and the same figures and FRRs to TensorBoard (tensorboard/). With `store_threshold`, each model's
operating threshold for a target FA/h is stored beside it (`speechcls.thresholds`): `detect`'s default.
`smooth_seconds` adds the DET lines of other smoothing windows, scored from the same posteriors.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from speechcls.config import CONFIG_DIR
from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN
from speechcls.data.twelve_class import KEYWORDS, UNKNOWN, WORD_COLUMN
from speechcls.detector import PROGRESS, Detector, Posteriors
from speechcls.inference import load_model, model_file
from speechcls.streams import KeywordStream
from speechcls.thresholds import operating_point, store_threshold

ALL = "all"
# What a DET curve is of: a model on the streams of one SNR heard through one channel.
CONDITION = ["model", "snr_db", "channel"]
TARGET_RATES = (0.5, 1.0, 5.0)
FALSE_ACCEPT_COLUMNS = [
    *CONDITION, "fa_per_hour_target", "threshold", "start", "end", "word", "score", "heard", "heard_word", "heard_file"
]
MISS_COLUMNS = [
    *CONDITION, "fa_per_hour_target", "threshold", "start", "end", "word", "file_name", "word_score", "top_word",
    "top_score", "why",
]  # fmt: skip
# From 0.05 up to 1 - 1e-4, ever closer to 1, where the low false-accept rates are.
THRESHOLDS = 1.0 - np.geomspace(0.95, 1e-4, 60)


def matching_clips(detections: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """Per detection, the row of `truth` (keyword clips sorted by start, never two in one window) that it
    overlaps with its word, or -1: a false accept."""
    if not len(truth):
        return np.full(len(detections), -1)
    starts, ends, words = truth.start.to_numpy(), truth.end.to_numpy(), truth.word.to_numpy()
    index = np.searchsorted(starts, detections.end.to_numpy(), side="left") - 1  # the last clip starting before
    clip = np.maximum(index, 0)
    matches = (index >= 0) & (ends[clip] > detections.start.to_numpy()) & (words[clip] == detections.word.to_numpy())
    return np.where(matches, clip, -1)


def clips_hit(clip: np.ndarray, clips: int) -> np.ndarray:
    """Which of `clips` keyword clips some detection hit, from `matching_clips`' row per detection."""
    hit = np.zeros(clips, dtype=bool)
    hit[clip[clip >= 0]] = True
    return hit


def overall_operating_points(curve: pd.DataFrame, targets: Sequence[float]) -> Iterator[tuple[float, pd.Series]]:
    """(target, the operating point over all keywords) for each target rate that some threshold meets."""
    for target in targets:
        point = operating_point(curve[curve.keyword == ALL], target)
        if point is not None:
            yield target, point


def rates(detections: pd.DataFrame, truth: pd.DataFrame, negative_hours: float) -> pd.DataFrame:
    """Clips, misses, false accepts, FRR and FA/h of `detections` (start, end, word) against `truth`
    (start, end, word of keyword clips that never overlap one window together), per word and overall."""
    truth = truth.sort_values("start", ignore_index=True)
    clip = matching_clips(detections, truth)
    hit = clips_hit(clip, len(truth))
    words, false_words = truth.word.to_numpy(), detections.word[clip < 0]
    rows = []
    for word in [*sorted(set(words)), ALL]:
        mine = np.ones(len(truth), bool) if word == ALL else words == word
        false = len(false_words) if word == ALL else int((false_words == word).sum())
        clips, missed = int(mine.sum()), int((mine & ~hit).sum())
        rows.append((word, clips, missed, false, missed / max(clips, 1), false / negative_hours))
    return pd.DataFrame(rows, columns=["keyword", "clips", "misses", "false_accepts", "frr", "fa_per_hour"])


def det_curve(
    detections_at: Callable[[float], pd.DataFrame],
    truth: pd.DataFrame,
    negative_hours: float,
    thresholds: Sequence[float] = THRESHOLDS,
) -> pd.DataFrame:
    """`rates` at each threshold, of the detections that `detections_at(threshold)` gives."""
    return pd.concat(
        [rates(detections_at(t), truth, negative_hours).assign(threshold=t) for t in thresholds], ignore_index=True
    )


def frr_at(curve: pd.DataFrame, targets: Sequence[float] = TARGET_RATES) -> pd.DataFrame:
    """Per keyword, the lowest FRR (and its threshold) among the thresholds with FA/h at most each target
    (`speechcls.thresholds.operating_point`); where no threshold is that low, FRR 1 and no threshold (NaN)."""
    rows = []
    for keyword, points in curve.groupby("keyword", sort=False):
        for target in targets:
            best = operating_point(points, target)
            rows.append(
                {
                    "keyword": keyword,
                    "fa_per_hour_target": target,
                    "frr": best.frr if best is not None else 1.0,
                    "threshold": best.threshold if best is not None else np.nan,
                }
            )
    return pd.DataFrame(rows)


def det_figure(curves: pd.DataFrame) -> Figure:
    """Overall FRR against FA/h (log scale), one panel per SNR and channel, one line per model."""
    overall = curves[curves.keyword == ALL]
    panels = sorted(set(zip(overall.snr_db, overall.channel)), key=lambda p: (-p[0], p[1] != "none", p[1]))
    figure = Figure(figsize=(4.5 * len(panels), 4), layout="constrained")
    for axes, (snr, channel) in zip(np.atleast_1d(figure.subplots(1, len(panels), sharey=True)), panels):
        shown = overall[(overall.snr_db == snr) & (overall.channel == channel)]
        for model, points in shown.groupby("model", sort=False):
            points = points.sort_values("fa_per_hour")
            axes.step(points.fa_per_hour.clip(lower=0.01), points.frr, where="post", label=model)
        for target in TARGET_RATES:
            axes.axvline(target, color="grey", linewidth=0.5, linestyle=":")
        title = f"{snr:g} dB SNR" + ("" if channel == "none" else f", {channel}")
        axes.set(xscale="log", xlabel="false accepts per hour", title=title, ylim=(0, 1))
        axes.set_ylabel("false-reject rate")
        axes.legend(fontsize=7)
    return figure


def stream_clips(cfg: DictConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The held-out test clips of the 12-class task (path, file_name, target, word): the keywords, and
    the `_unknown_` speech."""
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    test = datamodule.test_split()
    if datamodule.task != 12 or test is None or test.is_validation:
        raise ValueError("the streams are made of the 12-class task's test split: set data.task=12 and data.test_csv")
    clips = pd.DataFrame(
        {
            "path": test.dataset.paths,
            FILE_COLUMN: datamodule.file_names(test.dataset),
            TARGET_COLUMN: [datamodule.classes[label] for label in test.dataset.labels],
            WORD_COLUMN: test.table[WORD_COLUMN].to_numpy(),
        }
    )
    return clips[clips[TARGET_COLUMN].isin(KEYWORDS)], clips[clips[TARGET_COLUMN] == UNKNOWN]


def false_accepts(
    detections_at: Callable[[float], pd.DataFrame],
    curve: pd.DataFrame,
    stream: KeywordStream,
    clips: dict[str, pd.DataFrame],
    targets: Sequence[float] = TARGET_RATES,
) -> pd.DataFrame:
    """The false accepts at the threshold of each target rate (`curve`'s overall operating point), with
    what the stream held under each: `heard` (keyword, speech or noise) and the word and file_name of
    that clip (rows of `clips[heard]`, in the order the stream was given them)."""
    truth, tables = stream.truth(), []
    for target, point in overall_operating_points(curve, targets):
        detections = detections_at(point.threshold)
        false = detections[matching_clips(detections, truth) < 0].reset_index(drop=True)
        under = stream.under(false.start.to_numpy(), false.end.to_numpy())
        heard = [clips[kind].iloc[clip] if clip >= 0 else None for kind, clip in zip(under.heard, under.clip_row)]
        tables.append(
            false.assign(
                fa_per_hour_target=target,
                threshold=point.threshold,
                heard=under.heard,
                heard_word=[clip[WORD_COLUMN] if clip is not None else "" for clip in heard],
                heard_file=[clip[FILE_COLUMN] if clip is not None else "" for clip in heard],
            )
        )
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=FALSE_ACCEPT_COLUMNS)


def missed_keywords(
    detections_at: Callable[[float], pd.DataFrame],
    curve: pd.DataFrame,
    stream: KeywordStream,
    keyword_clips: pd.DataFrame,
    detector: Detector,
    posteriors: Posteriors,
    targets: Sequence[float] = TARGET_RATES,
) -> pd.DataFrame:
    """The keyword clips no detection hit at the threshold of each target rate (`curve`'s overall operating
    point), each with the highest smoothed probability of its own word over the windows that overlap it
    (`word_score`), the keyword smoothed highest there (`top_word`, `top_score`), and `why`: `another
    keyword` reached the threshold over it, its word stayed `below threshold`, or it reached it while an
    earlier detection's refractory period `held back` a new one. `keyword_clips`: the stream's keyword clips
    (file_name), in the order the stream was given them."""
    truth = stream.truth()
    files = keyword_clips[FILE_COLUMN].to_numpy()[stream.under(truth.start, truth.end).clip_row]
    smoothed = detector.smoothed(posteriors.probabilities)
    window_starts = posteriors.starts / detector.sample_rate
    first = np.searchsorted(window_starts, truth.start.to_numpy() - detector.window / detector.sample_rate, "right")
    last = np.searchsorted(window_starts, truth.end.to_numpy(), "left")
    names = detector.keyword_names
    word_score, top_word, top_score = [], [], []
    for low, high, word in zip(first, last, truth.word):
        best = smoothed[low:high].max(axis=0)  # clips are 1 s long: some window always overlaps one
        word_score.append(best[names.index(word)] if word in names else 0.0)  # a model without the word never says it
        top_word.append(names[best.argmax()])
        top_score.append(best.max())
    scored = truth.assign(file_name=files, word_score=word_score, top_word=top_word, top_score=top_score)
    tables = []
    for target, point in overall_operating_points(curve, targets):
        missed = scored[~clips_hit(matching_clips(detections_at(point.threshold), truth), len(truth))]
        why = np.select(
            [
                (missed.top_word != missed.word) & (missed.top_score >= point.threshold),
                missed.word_score >= point.threshold,
            ],
            ["another keyword", "held back"],
            "below threshold",
        )
        tables.append(missed.assign(fa_per_hour_target=target, threshold=point.threshold, why=why))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=MISS_COLUMNS)


def smoothing_variants(model: str, detector: Detector, smooth_seconds: Sequence[float] | None) -> dict[str, Detector]:
    """The detector and, for each of `smooth_seconds`, the same one averaging over that long, by DET
    label: `model` for the detector as configured (the one whose threshold is stored), `model, smooth S s`
    for the others. They score the same posteriors, so comparing them costs no extra model runs."""
    variants = {model: detector}
    for seconds in smooth_seconds or []:
        variant = detector.with_smoothing(seconds)
        if variant.smooth_windows != detector.smooth_windows:
            variants[f"{model}, smooth {seconds:g} s"] = variant
    return variants


def evaluate_streams(cfg: DictConfig) -> pd.DataFrame:
    """Write the reports into `paths.output_dir`; returns the FRR table."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    keywords, speech = stream_clips(cfg)
    clips = {"keyword": keywords, "speech": speech}
    curves, false, missed = [], [], []
    files = {spec: model_file(spec, cfg.runs_dir) for spec in cfg.ckpt_path}
    for spec, path in files.items():
        model, classes = load_model(path, cfg.channels_last)
        detector: Detector = instantiate(cfg.detector, model=model, classes=classes)
        variants = smoothing_variants(str(spec), detector, cfg.smooth_seconds)
        for snr, channel in itertools.product(cfg.snr_db, cfg.channels):
            stream: KeywordStream = instantiate(
                cfg.stream,
                keyword_clips=list(zip(keywords.path, keywords[TARGET_COLUMN])),
                speech_clips=speech.path.tolist(),
                snr_db=snr,
                channel=channel,
            )
            seconds = stream.samples / detector.sample_rate
            with tqdm(total=seconds, desc=f"{spec} at {snr:g} dB, {channel}", bar_format=PROGRESS) as bar:
                posteriors = detector.posteriors(stream.blocks(), lambda samples: bar.update(samples / detector.sample_rate))
            truth = stream.truth()
            for label, variant in variants.items():
                detections_at = functools.partial(variant.detections, posteriors)
                curve = det_curve(detections_at, truth, stream.negative_hours)
                curves.append(curve.assign(model=label, snr_db=snr, channel=channel))
                if variant is detector:
                    heard = false_accepts(detections_at, curve, stream, clips)
                    false.append(heard.assign(model=label, snr_db=snr, channel=channel))
                    lost = missed_keywords(detections_at, curve, stream, keywords, detector, posteriors)
                    missed.append(lost.assign(model=label, snr_db=snr, channel=channel))
    curves = pd.concat(curves, ignore_index=True)
    curves.to_csv(output_dir / "det.csv", index=False, float_format="%.5g")
    groups = curves.groupby(CONDITION, sort=False)
    table = pd.concat(
        [frr_at(points).assign(**dict(zip(CONDITION, key))) for key, points in groups], ignore_index=True
    )[[*CONDITION, "keyword", "fa_per_hour_target", "frr", "threshold"]]
    table.to_csv(output_dir / "kws_metrics.csv", index=False, float_format="%.4f")
    false = pd.concat(false, ignore_index=True)[FALSE_ACCEPT_COLUMNS]
    false.to_csv(output_dir / "false_accepts.csv", index=False, float_format="%.4f")
    missed = pd.concat(missed, ignore_index=True)[MISS_COLUMNS]
    missed.to_csv(output_dir / "misses.csv", index=False, float_format="%.4f")
    if cfg.store_threshold:
        store_thresholds(curves, files, **cfg.store_threshold)
    figure = det_figure(curves)
    figure.savefig(output_dir / "det_curve.png", dpi=150)
    with SummaryWriter(str(output_dir / "tensorboard")) as writer:
        writer.add_figure("kws/det_curve", figure)
        for row in table[table.keyword == ALL].itertuples():
            name = f"kws/frr_at_{row.fa_per_hour_target:g}_fa_per_hour/{row.snr_db:g}dB_{row.channel}/{row.model}"
            writer.add_scalar(name, row.frr)
    overall = table[table.keyword == ALL].pivot(index=CONDITION, columns="fa_per_hour_target", values="frr")
    print(f"\nfalse-reject rate at false accepts per hour ({len(keywords)} keyword clips per stream)\n{overall.to_string()}")
    if len(false):
        heard = false.groupby([*CONDITION, "fa_per_hour_target"]).heard.value_counts().unstack(fill_value=0)
        print(f"\nfalse accepts at each target's threshold by what the stream held under them\n{heard.to_string()}")
    if len(missed):
        why = missed.groupby([*CONDITION, "fa_per_hour_target"]).why.value_counts().unstack(fill_value=0)
        print(f"\nmissed keyword clips at each target's threshold by why\n{why.to_string()}")
    print(f"reports: {output_dir}")
    return table


def store_thresholds(curves: pd.DataFrame, files: dict, fa_per_hour: float, snr_db: float) -> None:
    """Store beside each model the threshold of its fewest false rejects within `fa_per_hour` false
    accepts an hour at `snr_db` (`speechcls.thresholds`): `detect`'s default for it."""
    for spec, path in files.items():
        wideband = curves[(curves.channel == "none") & (curves.keyword == ALL)]
        curve = wideband[(wideband.model == str(spec)) & (wideband.snr_db == snr_db)]
        point = operating_point(curve, fa_per_hour) if len(curve) else None
        if point is None:
            print(f"{spec}: no threshold keeps {fa_per_hour:g} false accepts an hour at {snr_db:g} dB; none stored")
            continue
        stored = store_threshold(path, point, fa_per_hour, snr_db)
        operating = f"FRR {point.frr:.3f} at {point.fa_per_hour:.2f} FA/h"
        print(f"{spec}: threshold {point.threshold:.4f} ({operating}) -> {stored}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate_streams")
def main(cfg: DictConfig) -> None:
    evaluate_streams(cfg)


if __name__ == "__main__":
    main()
