"""Long-audio keyword spotting benchmark streams: held-out clips at known times over noise, made on the fly.

A stream is a row of `slot_seconds` slots. Each held-out keyword clip gets a slot of its own (drawn
among all slots); of the other slots, a `speech_probability` share holds a clip of a non-keyword word
(`_unknown_` speech) and the rest background noise only; the slots without a keyword last at least
`hours`. A clip lies at a drawn offset inside its slot, at least 0.5 s from the slot's edges, so
clips are 1 s or more apart and a 1 s window never overlaps two of them. The background is the
synthetic set's noise generator (`speechcls.audio.coloured`, a drawn colour each block) at
`noise_dbfs` RMS, and every clip is scaled to `snr_db` above it (mean power over its 1 s).

`channel` puts the whole stream through a phone line of the channel simulation (`phone-gsm`,
`phone-mp3-v<quality>`: 8 kHz, 300-3400 Hz and the codec; needs the voices extra), so the benchmark is
not only the wideband clean audio the models trained on.

The schedule and the noise depend on `seed` only, so streams at different SNRs differ in the clips'
gain alone. The audio is made block by block when read (`blocks()`), never stored: two hours of it
would be 460 MB as float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE, coloured, load_clip

KEYWORD, SPEECH, NOISE = 0, 1, 2
KIND_NAMES = ("keyword", "speech", "noise")
TRUTH_COLUMNS = ["start", "end", "word"]


class KeywordStream:
    """One benchmark stream of `keyword_clips` ((path, word) pairs, each placed once) among
    `speech_clips` (paths of non-keyword speech, drawn with replacement)."""

    def __init__(
        self,
        keyword_clips: Sequence[tuple[str | Path, str]],
        speech_clips: Sequence[str | Path],
        snr_db: float,
        hours: float = 2.0,
        slot_seconds: float = 4.0,
        speech_probability: float = 0.5,
        noise_dbfs: float = -40.0,
        block_slots: int = 15,
        seed: int = 0,
        channel: str = "none",
    ) -> None:
        if slot_seconds < 2.0 + CLIP_SAMPLES / SAMPLE_RATE:
            raise ValueError(f"slot_seconds must leave 0.5 s either side of a clip and room to move it, got {slot_seconds}")
        if not keyword_clips or (speech_probability > 0 and not speech_clips):
            raise ValueError("a stream needs keyword clips, and speech clips unless speech_probability is 0")
        self.channel = channel
        if channel != "none":  # the channel simulation needs the voices extra
            from speechcls.synth.channel import Channel, named_condition

            line, row = Channel(), named_condition(channel)
            self.through_channel = lambda block: line.apply(block, row)
        self.words = [word for _, word in keyword_clips]
        self.snr_db = snr_db
        self.slot = round(slot_seconds * SAMPLE_RATE)
        self.noise_dbfs, self.block_slots, self.seed = noise_dbfs, block_slots, seed
        rng = np.random.default_rng([seed, 0])
        slots = math.ceil(hours * 3600 / slot_seconds) + len(keyword_clips)
        self.kind = np.where(rng.random(slots) < speech_probability, SPEECH, NOISE)
        self.clip = rng.integers(len(speech_clips), size=slots) if len(speech_clips) else np.zeros(slots, dtype=int)
        keyword_slots = np.sort(rng.choice(slots, size=len(keyword_clips), replace=False))
        self.kind[keyword_slots] = KEYWORD
        self.clip[keyword_slots] = rng.permutation(len(keyword_clips))
        margin = SAMPLE_RATE // 2
        self.offset = rng.integers(margin, self.slot - margin - CLIP_SAMPLES, size=slots, endpoint=True)
        self.keyword_audio = torch.stack([load_clip(path) for path, _ in keyword_clips])
        self.speech_audio = torch.stack([load_clip(path) for path in speech_clips]) if len(speech_clips) else None

    @property
    def samples(self) -> int:
        return len(self.kind) * self.slot

    @property
    def negative_hours(self) -> float:
        """Hours of the stream outside the keyword clips: the false accepts' denominator."""
        return (self.samples - len(self.words) * CLIP_SAMPLES) / SAMPLE_RATE / 3600

    def truth(self) -> pd.DataFrame:
        """Where each keyword clip lies: start and end in seconds, and its word, in time order."""
        slots = np.flatnonzero(self.kind == KEYWORD)
        starts = (slots * self.slot + self.offset[slots]) / SAMPLE_RATE
        words = [self.words[i] for i in self.clip[slots]]
        return pd.DataFrame({"start": starts, "end": starts + CLIP_SAMPLES / SAMPLE_RATE, "word": words})

    def under(self, starts: np.ndarray, ends: np.ndarray) -> pd.DataFrame:
        """What lies under each window [start, end) (seconds): `heard`, the kind of clip it overlaps
        (keyword or speech; noise where it overlaps none), and `clip_row`, that clip's row in
        `keyword_clips` or `speech_clips` (-1 for noise). Clips lie 1 s or more apart, so the slot of a
        window's middle holds the only clip it can overlap."""
        starts, ends = np.asarray(starts) * SAMPLE_RATE, np.asarray(ends) * SAMPLE_RATE
        slot = np.clip(((starts + ends) / 2 // self.slot).astype(int), 0, len(self.kind) - 1)
        clip_start = slot * self.slot + self.offset[slot]
        overlaps = (self.kind[slot] != NOISE) & (clip_start < ends) & (clip_start + CLIP_SAMPLES > starts)
        kind = np.where(overlaps, self.kind[slot], NOISE)
        return pd.DataFrame({"heard": np.array(KIND_NAMES)[kind], "clip_row": np.where(overlaps, self.clip[slot], -1)})

    def blocks(self) -> Iterator[torch.Tensor]:
        """The stream's audio, `block_slots` slots at a time."""
        noise_gain = 10 ** (self.noise_dbfs / 20)
        for first in range(0, len(self.kind), self.block_slots):
            slots = range(first, min(first + self.block_slots, len(self.kind)))
            rng = np.random.default_rng([self.seed, 1, first])
            noise = coloured(torch.from_numpy(rng.standard_normal(len(slots) * self.slot)), rng.uniform(0.0, 2.0))
            block = (noise * (noise_gain / noise.std())).float()
            for slot in slots:
                if self.kind[slot] == NOISE:
                    continue
                audio = self.keyword_audio if self.kind[slot] == KEYWORD else self.speech_audio
                clip = audio[self.clip[slot]]
                gain = noise_gain * 10 ** (self.snr_db / 20) / clip.pow(2).mean().sqrt().clamp(min=1e-8)
                start = (slot - first) * self.slot + self.offset[slot]
                block[start : start + CLIP_SAMPLES] += gain * clip
            block = block.clamp_(-1.0, 1.0)
            yield block if self.channel == "none" else self.through_channel(block)
