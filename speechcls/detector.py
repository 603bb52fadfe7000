"""Sliding-window keyword detection over audio of any length with a clip classifier: windows, smoothed
keyword probabilities, and detections where they reach a threshold (`speechcls.detect` is its command)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE, crop_windows, evaluation_start
from speechcls.data.twelve_class import SILENCE, UNKNOWN
from speechcls.thresholds import DEFAULT_THRESHOLD

NEVER_FIRE = (UNKNOWN, SILENCE)
PROGRESS = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}]"


@dataclass
class Posteriors:
    """Class probabilities of the windows of one recording: `starts` (windows,) in samples, possibly
    negative for a centred short recording, `probabilities` (windows, classes), and its `length`."""

    starts: np.ndarray
    probabilities: np.ndarray
    length: int


Threshold = float | Mapping[str, float]  # one for every keyword, or one each


class Detector:
    """Sliding-window keyword detection with a classifier `model`: waveforms (batch, `window`) at
    `sample_rate` -> class scores (batch, classes), in the order of `classes`. `threshold`: one for every
    keyword, or a mapping with one for each keyword (a model that confuses some words wants them apart)."""

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        classes: Iterable[str],
        hop: int = 2048,
        smooth_seconds: float = 0.4,
        threshold: Threshold | None = None,
        refractory_seconds: float = 1.0,
        batch_size: int = 256,
        window: int = CLIP_SAMPLES,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        if hop < 1 or hop > window:
            raise ValueError(f"hop must be between 1 and the window ({window} samples), got {hop}")
        self.model = model
        self.classes = list(classes)
        self.keywords = [i for i, name in enumerate(self.classes) if name not in NEVER_FIRE]
        self.hop, self.window, self.sample_rate, self.batch_size = hop, window, sample_rate, batch_size
        self.smooth_windows = self._windows(smooth_seconds)
        self.threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        self.keyword_thresholds()  # a mapping that misses a keyword fails here, not at the first detection
        self.refractory_seconds = refractory_seconds

    def _windows(self, seconds: float) -> int:
        return max(1, round(seconds * self.sample_rate / self.hop))

    def with_smoothing(self, seconds: float) -> Detector:
        """This detector averaging over `seconds` instead: one set of posteriors scored several ways."""
        other = copy.copy(self)
        other.smooth_windows = self._windows(seconds)
        return other

    def posteriors(self, blocks: Iterable[torch.Tensor], progress: Callable[[int], None] = lambda samples: None) -> Posteriors:
        """The windows' class probabilities over a recording given as consecutive 1-D blocks."""
        starts, probabilities, length = [], [], 0
        for batch_starts, windows, length in self.windows(blocks, progress):
            with torch.inference_mode():
                probabilities.append(self.model(windows).float().softmax(dim=-1).cpu().numpy())
            starts.append(batch_starts)
        return Posteriors(np.concatenate(starts), np.concatenate(probabilities), length)

    def windows(
        self, blocks: Iterable[torch.Tensor], progress: Callable[[int], None]
    ) -> Iterator[tuple[np.ndarray, torch.Tensor, int]]:
        """(window starts, windows (batch, window), samples read so far) in batches of `batch_size`,
        holding one block and a window's worth of samples before it."""
        buffer, offset, next_start, total = torch.zeros(0), 0, 0, 0  # offset: buffer[0]'s sample index
        for block in blocks:
            buffer, total = torch.cat([buffer, block.float()]), total + len(block)
            progress(len(block))
            count = max(0, (total - self.window - next_start) // self.hop + 1)
            for first in range(0, count, self.batch_size):
                starts = next_start + self.hop * np.arange(first, min(count, first + self.batch_size))
                yield starts, self._crop(buffer, starts - offset), total
            next_start += count * self.hop
            keep = min(next_start, total) - offset
            buffer, offset = buffer[keep:], offset + keep
        if total < self.window:  # never windowed: all of it is in the buffer, a clip placed as prediction does
            start = np.array([evaluation_start(buffer, self.window)])
            yield start, self._crop(buffer, start), total
        elif next_start - self.hop + self.window < total:  # the tail after the last full window
            yield np.array([next_start]), self._crop(buffer, np.array([next_start - offset])), total

    def _crop(self, buffer: torch.Tensor, starts: np.ndarray) -> torch.Tensor:
        padded = torch.nn.functional.pad(buffer, (self.window, self.window))
        rows = torch.as_tensor(starts)
        index = torch.full_like(rows, self.window), torch.full_like(rows, len(buffer))
        return crop_windows(padded, index[0], index[1], rows, self.window)

    def smoothed(self, probabilities: np.ndarray) -> np.ndarray:
        """Keyword probabilities (windows, keywords) averaged over the last `smooth_windows` windows."""
        keywords = probabilities[:, self.keywords]
        cumulative = np.concatenate([np.zeros((1, keywords.shape[1])), keywords.cumsum(axis=0)])
        index = np.arange(1, len(keywords) + 1)
        low = np.maximum(index - self.smooth_windows, 0)
        return (cumulative[index] - cumulative[low]) / (index - low)[:, None]

    @property
    def keyword_names(self) -> list[str]:
        return [self.classes[k] for k in self.keywords]

    def keyword_thresholds(self, threshold: Threshold | None = None) -> np.ndarray:
        """`threshold` (default: the detector's) as one value per keyword, in `keyword_names` order."""
        threshold = self.threshold if threshold is None else threshold
        if not isinstance(threshold, Mapping):
            return np.full(len(self.keywords), float(threshold))
        missing, extra = set(self.keyword_names) - set(threshold), set(threshold) - set(self.keyword_names)
        if missing or extra:
            raise ValueError(
                f"per-keyword thresholds need exactly the model's keywords {self.keyword_names}: "
                f"missing {sorted(missing)}, not keywords {sorted(extra)}"
            )
        return np.array([float(threshold[name]) for name in self.keyword_names])

    def fire(self, starts: np.ndarray, above: np.ndarray) -> np.ndarray:
        """Indices of the windows where a detection fires: some keyword is `above` (windows, keywords)
        its threshold and no detection fired less than `refractory_seconds` before."""
        refractory = self.refractory_seconds * self.sample_rate
        fired, last = [], -np.inf
        for i in np.flatnonzero(above.any(axis=1)):
            if starts[i] >= last + refractory:
                fired.append(i)
                last = starts[i]
        return np.array(fired, dtype=int)

    def detections(self, posteriors: Posteriors, threshold: Threshold | None = None) -> pd.DataFrame:
        """Detections (start, end, word, score) of one recording's posteriors at `threshold` (default: the
        detector's); a detection's word is the most probable of the keywords at or above theirs."""
        smoothed = self.smoothed(posteriors.probabilities)
        above = smoothed >= self.keyword_thresholds(threshold)
        fired = self.fire(posteriors.starts, above)
        candidates = np.where(above[fired], smoothed[fired], -np.inf)  # keywords below theirs never name a detection
        best = candidates.argmax(axis=1) if len(fired) else np.zeros(0, dtype=int)
        starts = posteriors.starts[fired]
        return pd.DataFrame(
            {
                "start": np.maximum(starts, 0) / self.sample_rate,
                "end": np.minimum(starts + self.window, posteriors.length) / self.sample_rate,
                "word": [self.classes[self.keywords[k]] for k in best],
                "score": smoothed[fired, best] if len(fired) else np.zeros(0),
            }
        )
