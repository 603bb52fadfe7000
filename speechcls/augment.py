"""Training-time augmentation of batches on the training device.

Waveform transforms run before the log-mel, SpecAugment after it, mixup last (it blends the targets
too). Each transform has a strength and a probability `p`, drawn per example. Randomness comes from
the global torch generator, which `seed_everything` seeds. The LightningModule applies them in
`training_step` only: validation, test and prediction never see them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from torch import nn

from speechcls.audio import SAMPLE_RATE, coloured, crop_windows, random_starts, read_audio, shift
from speechcls.data.twelve_class import SILENCE, UNKNOWN


class RandomTransform(nn.Module):
    """Applies `transform` to each example of a batch with probability `p`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = p

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chosen = torch.rand(len(x), device=x.device) < self.p
        if x.device.type == "cpu":
            # Transform only the chosen examples: transforming the whole batch costs a CPU a noticeable
            # part of a training step. On a GPU, finding them would wait for the device.
            rows = chosen.nonzero().squeeze(1)
            x = x.clone()
            if len(rows):
                x[rows] = self.transform(x[rows])
            return x
        return torch.where(chosen.view(-1, *[1] * (x.dim() - 1)), self.transform(x), x)


def _uniform(low: float, high: float, n: int, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device)


class TimeShift(RandomTransform):
    """Shift each waveform (batch, samples) by up to `max_seconds` either way, filling with silence."""

    def __init__(self, max_seconds: float = 0.1, p: float = 0.5, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__(p)
        self.max_shift = int(max_seconds * sample_rate)

    def transform(self, wave: torch.Tensor) -> torch.Tensor:
        delays = torch.randint(-self.max_shift, self.max_shift + 1, (len(wave),), device=wave.device)
        return shift(wave, delays)


class RandomGain(RandomTransform):
    """Scale each waveform by a gain drawn uniformly in [-max_db, max_db] decibels."""

    def __init__(self, max_db: float = 6.0, p: float = 0.5) -> None:
        super().__init__(p)
        self.max_db = max_db

    def transform(self, wave: torch.Tensor) -> torch.Tensor:
        gain_db = _uniform(-self.max_db, self.max_db, len(wave), wave.device)
        return wave * 10 ** (gain_db[:, None] / 20)


class BackgroundNoise(RandomTransform):
    """Add noise at a signal-to-noise ratio drawn uniformly in `snr_db` (low, high) decibels.

    The noise is random crops of the audio files in `folder` (e.g. Speech Commands'
    `_background_noise_`), from the `stretch` (start, end fractions) of each file, or, without a
    folder, generated coloured noise with a 1/f**exponent power spectrum, the exponent drawn in
    `exponent` (0 white, 1 pink, 2 brown). The folder is read on the first batch, so a checkpoint
    trained with it loads where the folder does not exist.
    """

    def __init__(
        self,
        snr_db: tuple[float, float] = (5.0, 25.0),
        p: float = 0.5,
        folder: str | None = None,
        stretch: tuple[float, float] = (0.0, 1.0),
        exponent: tuple[float, float] = (0.0, 2.0),
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        super().__init__(p)
        self.snr_db = tuple(snr_db)
        self.folder = folder
        self.stretch = tuple(stretch)
        self.exponent = tuple(exponent)
        self.sample_rate = sample_rate
        self.recordings: torch.Tensor | None = None

    def transform(self, wave: torch.Tensor) -> torch.Tensor:
        noise = self._recorded(wave) if self.folder else self._coloured(wave)
        noise = noise / noise.pow(2).mean(-1, keepdim=True).clamp_min(1e-12).sqrt()
        snr_db = _uniform(*self.snr_db, len(wave), wave.device)[:, None]
        signal_power = wave.pow(2).mean(-1, keepdim=True)
        return wave + noise * (signal_power / 10 ** (snr_db / 10)).sqrt()

    def _coloured(self, wave: torch.Tensor) -> torch.Tensor:
        return coloured(torch.randn_like(wave), _uniform(*self.exponent, len(wave), wave.device)[:, None])

    def _recorded(self, wave: torch.Tensor) -> torch.Tensor:
        if self.recordings is None:
            files = sorted(Path(self.folder).glob("*.wav"))
            if not files:
                raise FileNotFoundError(f"BackgroundNoise: no .wav files in {self.folder}")
            self.recordings = torch.cat([self._stretch(read_audio(f, self.sample_rate)) for f in files]).to(wave.device)
        recordings = self.recordings
        length = wave.shape[-1]
        if len(recordings) < length:
            raise ValueError(
                f"BackgroundNoise: {self.folder} holds {len(recordings)} samples of noise, fewer than a clip ({length})"
            )
        total = torch.full((len(wave),), len(recordings), device=wave.device)
        return crop_windows(recordings, torch.zeros_like(total), total, random_starts(total, length), length)

    def _stretch(self, recording: torch.Tensor) -> torch.Tensor:
        start, end = (round(fraction * len(recording)) for fraction in self.stretch)
        return recording[start:end]


class SpeedPerturbation(RandomTransform):
    """Play each waveform faster or slower by a factor drawn in `factor` (low, high), like a tape.

    Tempo and pitch change together (Kaldi's speed perturbation): linear interpolation around the
    clip's centre; a sped-up clip gets silence at both ends, a slowed one loses its ends.
    """

    def __init__(self, factor: tuple[float, float] = (0.9, 1.1), p: float = 0.5) -> None:
        super().__init__(p)
        self.factor = tuple(factor)

    def transform(self, wave: torch.Tensor) -> torch.Tensor:
        length = wave.shape[-1]
        centre = (length - 1) / 2
        factor = _uniform(*self.factor, len(wave), wave.device)[:, None]
        position = centre + (torch.arange(length, device=wave.device) - centre) * factor
        # grid_sample interpolates in one op (a third of the time of two gathers on a CPU). The clip is
        # padded by one sample of silence each side; positions outside read zeros. Normalised to the
        # padded clip's [-1, 1] (align_corners: -1 and 1 are its first and last samples).
        x = (position + 1) * (2 / (length + 1)) - 1
        grid = torch.stack([x, torch.zeros_like(x)], dim=-1)[:, None]
        padded = nn.functional.pad(wave, (1, 1))[:, None, None]
        return nn.functional.grid_sample(padded, grid, padding_mode="zeros", align_corners=True)[:, 0, 0]


class ParametricEqualizer(RandomTransform):
    """`bands` peaking filters in a row on each chosen waveform (batch, samples), every one with its own
    centre frequency (log-uniform in `freq_hz`), gain (uniform in `gain_db`) and quality (uniform in `q`),
    drawn per example: the spectral colour in which voices, synthesizers and recording chains differ and
    a synthesizer's voices share. openWakeWord, trained on synthetic speech only, uses such an equaliser
    (audiomentations' SevenBandParametricEQ). Coefficients from the Audio EQ Cookbook (R. Bristow-Johnson),
    as torchaudio's `equalizer_biquad`, which takes one filter for the whole batch.
    """

    def __init__(
        self,
        bands: int = 3,
        gain_db: tuple[float, float] = (-12.0, 12.0),
        freq_hz: tuple[float, float] = (100.0, 6000.0),
        q: tuple[float, float] = (0.5, 2.0),
        p: float = 0.5,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        super().__init__(p)
        if not 0 < freq_hz[0] <= freq_hz[1] < sample_rate / 2:
            raise ValueError(f"ParametricEqualizer: freq_hz must lie in (0, {sample_rate / 2}), got {freq_hz}")
        self.bands, self.gain_db, self.q, self.sample_rate = bands, gain_db, q, sample_rate
        self.log_freq = (math.log(freq_hz[0]), math.log(freq_hz[1]))

    def transform(self, wave: torch.Tensor) -> torch.Tensor:
        n = len(wave)
        for _ in range(self.bands):
            w0 = 2 * math.pi / self.sample_rate * _uniform(*self.log_freq, n, wave.device).exp()
            amplitude = 10 ** (_uniform(*self.gain_db, n, wave.device) / 40)
            alpha = w0.sin() / (2 * _uniform(*self.q, n, wave.device))
            cos = -2 * w0.cos()
            b = torch.stack([1 + alpha * amplitude, cos, 1 - alpha * amplitude], dim=-1)
            a = torch.stack([1 + alpha / amplitude, cos, 1 - alpha / amplitude], dim=-1)
            wave = AF.lfilter(wave, a.to(wave.dtype), b.to(wave.dtype), clamp=False, batching=True)
        return wave


class SpecAugment(RandomTransform):
    """Frequency and time masking of log-mels (batch, 1, n_mels, frames), independent per example.

    Each of the `freq_masks` (`time_masks`) masks covers up to `freq_width` (`time_width`) of the
    mel bins (frames), as a fraction, so the same setting suits any front end. Masked cells get the
    example's mean level rather than 0 dB, which would be a loud artefact in unnormalised log-mels.
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: float = 0.15,
        time_masks: int = 2,
        time_width: float = 0.1,
        p: float = 0.5,
    ) -> None:
        super().__init__(p)
        self.masks = ((freq_masks, freq_width, -2), (time_masks, time_width, -1))

    def transform(self, spectrogram: torch.Tensor) -> torch.Tensor:
        keep = torch.ones_like(spectrogram)
        for count, width, axis in self.masks:
            mask_param = round(width * spectrogram.shape[axis])
            for _ in range(count):
                keep = AF.mask_along_axis_iid(keep, mask_param, 0.0, keep.dim() + axis)
        return torch.where(keep.bool(), spectrogram, spectrogram.mean(dim=(-2, -1), keepdim=True))


class Mixup(nn.Module):
    """Blend examples with a shuffled copy of the batch, inputs and target distributions alike.

    With probability `p` an example gets weight lam ~ Beta(alpha, alpha), folded to lam >= 0.5 so
    its own class stays the majority (training accuracy is measured against it).
    """

    def __init__(self, alpha: float = 0.2, p: float = 0.5) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"Mixup: alpha must be positive, got {alpha}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Mixup: p must be in [0, 1], got {p}")
        self.alpha = alpha
        self.p = p

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(x)
        alpha = torch.tensor(float(self.alpha), device=x.device)
        lam = torch.distributions.Beta(alpha, alpha).sample((n,))
        lam = torch.maximum(lam, 1 - lam)
        lam = torch.where(torch.rand(n, device=x.device) < self.p, lam, torch.ones_like(lam))
        partner = torch.randperm(n, device=x.device)
        weight = lam.view(-1, *[1] * (x.dim() - 1))
        mixed_target = lam[:, None] * target + (1 - lam[:, None]) * target[partner]
        return weight * x + (1 - weight) * x[partner], mixed_target


class EdgeWindows(nn.Module):
    """Training windows as a detector's sliding window sees a stream: each example (probability `p`)
    moved by up to `max_seconds` either way, so a keyword lies anywhere in the window or is cut by its
    edge (zero-filled; the noise transform then fills the gap).

    What counts as the keyword at the edge: a window that keeps at least `min_kept` of the clip's
    energy keeps its label; one that keeps less is labelled `cut_label` (`_unknown_`: part of a word is
    not the word), so a detector fires when the window holds the word, not as it enters or leaves.
    Examples of other classes keep theirs. Needs `cut_label` among the classes (the 12-class task).
    """

    def __init__(self, max_seconds: float = 0.6, min_kept: float = 0.8, p: float = 0.5, cut_label: str = UNKNOWN,
                 sample_rate: int = SAMPLE_RATE) -> None:  # fmt: skip
        super().__init__()
        if not 0.0 <= p <= 1.0 or not 0.0 < min_kept <= 1.0:
            raise ValueError(f"EdgeWindows: need p in [0, 1] and min_kept in (0, 1], got {p} and {min_kept}")
        self.max_shift, self.min_kept, self.p, self.cut_label = int(max_seconds * sample_rate), min_kept, p, cut_label

    def forward(self, wave: torch.Tensor, target: torch.Tensor, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cut_label not in classes:
            raise ValueError(f"EdgeWindows relabels cut keywords as {self.cut_label!r}, not a class here (data.task=12)")
        chosen = torch.rand(len(wave), device=wave.device) < self.p
        delays = torch.randint(-self.max_shift, self.max_shift + 1, (len(wave),), device=wave.device) * chosen
        moved = shift(wave, delays)
        energy = wave.pow(2).sum(dim=1).clamp(min=1e-12)
        kept = moved.pow(2).sum(dim=1) / energy
        is_keyword = torch.tensor([name not in (UNKNOWN, SILENCE) for name in classes], device=target.device)
        cut = is_keyword[target] & (kept < self.min_kept)
        return moved, torch.where(cut, torch.full_like(target, classes.index(self.cut_label)), target)


class PhoneBand(RandomTransform):
    """A telephone line's band: each chosen waveform resampled to 8 kHz and back (nothing above 4 kHz)
    and band-passed to 300-3400 Hz, on the training device."""

    def __init__(self, p: float = 0.25, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__(p)
        self.sample_rate = sample_rate

    def transform(self, wave: torch.Tensor) -> torch.Tensor:
        narrow = AF.resample(AF.resample(wave, self.sample_rate, 8000), 8000, self.sample_rate)[..., : wave.shape[-1]]
        return AF.lowpass_biquad(AF.highpass_biquad(narrow, self.sample_rate, 300.0), self.sample_rate, 3400.0)


class RoomReverb(RandomTransform):
    """Each chosen waveform heard in a room drawn from a bank of `rooms` impulse responses of the channel
    simulation's small and large rooms (`speechcls.synth.channel`, drawn once with `seed`), at its own level:
    a clip meets a new room at every epoch, where the two-engine set puts each clip in one. Needs the voices
    extra (pyroomacoustics)."""

    def __init__(self, rooms: int = 64, p: float = 0.5, seed: int = 0) -> None:
        super().__init__(p)
        from speechcls.synth.channel import Channel, room_impulse_response

        if rooms < 1:
            raise ValueError(f"RoomReverb: rooms must be at least 1, got {rooms}")
        channel = Channel(weights={"small_room": 1.0, "large_room": 1.0}, mic_probability=0.0)
        rng = np.random.default_rng(seed)
        responses = [torch.from_numpy(room_impulse_response(channel.draw(rng))).float() for _ in range(rooms)]
        self.register_buffer("impulses", nn.utils.rnn.pad_sequence(responses, batch_first=True), persistent=False)

    def transform(self, wave: torch.Tensor) -> torch.Tensor:
        rooms = self.impulses[torch.randint(len(self.impulses), wave.shape[:-1], device=wave.device)]
        wet = AF.fftconvolve(wave, rooms)[..., : wave.shape[-1]]
        # A room's response has its peak at 1 and an energy that varies with the room: keep the clip's level.
        return wet * (wave.norm(dim=-1, keepdim=True) / wet.norm(dim=-1, keepdim=True).clamp(min=1e-8))


class Augmentation(nn.Module):
    """The training-time transforms, which the LightningModule's training step applies in order:
    `window` (moves examples and may relabel them), `wave` before the features, `spectrogram` after
    them, then `mixup`.

    `wave` and `spectrogram` are named transforms in order; a None entry is switched off (so a config
    can disable one with `augment.wave.noise=null`). With no arguments nothing is changed.
    """

    def __init__(
        self,
        wave: dict[str, nn.Module | None] | None = None,
        spectrogram: dict[str, nn.Module | None] | None = None,
        mixup: Mixup | None = None,
        window: EdgeWindows | None = None,
    ) -> None:
        super().__init__()
        self.window = window
        self.wave = nn.Sequential(OrderedDict((name, t) for name, t in (wave or {}).items() if t is not None))
        self.spectrogram = nn.Sequential(
            OrderedDict((name, t) for name, t in (spectrogram or {}).items() if t is not None)
        )
        self.mixup = mixup

    @property
    def names(self) -> list[str]:
        """The transforms switched on, in the order they apply."""
        names = ["window"] if self.window is not None else []
        names += [name for name, _ in [*self.wave.named_children(), *self.spectrogram.named_children()]]
        return names + (["mixup"] if self.mixup is not None else [])
