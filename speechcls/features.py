"""Log-mel spectrograms computed on batches, on the training device."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from speechcls.audio import SAMPLE_RATE


class LogMel(nn.Module):
    """Waveforms (batch, samples) -> log-mel spectrograms (batch, 1, n_mels, frames) in dB."""

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
    ) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=top_db)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # The explicit channel axis matters: AmplitudeToDB applies top_db per item only for
        # (batch, channel, freq, time); for (batch, freq, time) it clamps the whole batch at once,
        # making an item's features depend on the other clips in its batch.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self.to_db(self.mel_power(wave.float()).unsqueeze(1))

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


def reflect_pad(wave: torch.Tensor, width: int) -> torch.Tensor:
    """`nn.functional.pad(wave, (width, width), mode="reflect")` along the last axis, as one concatenation:
    torch's reflection-pad kernel is several times slower on a CPU."""
    if wave.shape[-1] <= width:
        raise ValueError(f"LogMel: clips of {wave.shape[-1]} samples are too short for the FFT (need over {width})")
    return torch.cat([wave[..., 1 : width + 1].flip(-1), wave, wave[..., -width - 1 : -1].flip(-1)], dim=-1)
