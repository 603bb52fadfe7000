"""libespeak-ng of the espeakng-loader wheel through ctypes: words spoken synchronously into memory, and
their IPA (the neural engine speaks espeak-ng's phonemes)."""

from __future__ import annotations

import ctypes

import espeakng_loader
import numpy as np
import torch
import torchaudio

from speechcls.audio import FULL_SCALE, SAMPLE_RATE


def trim_silence(wave: np.ndarray, what: str) -> torch.Tensor:
    """`wave` without leading and trailing samples below -40 dB re its peak; an error naming `what`
    if it is all silence."""
    loud = np.flatnonzero(np.abs(wave) > 0.01 * np.abs(wave).max(initial=0))
    if len(loud) == 0:
        raise RuntimeError(f"{what} produced silence")
    return torch.from_numpy(wave[loud[0] : loud[-1] + 1])


class Espeak:
    """libespeak-ng from the espeakng-loader wheel, synthesizing synchronously into memory."""

    OUTPUT_SYNCHRONOUS = 2
    DONT_EXIT = 0x8000  # return errors instead of exiting the process
    RATE, VOLUME, PITCH, RANGE = 1, 2, 3, 4
    CHARS_UTF8, POSITION_CHARACTER = 1, 1
    IPA = 0x02  # espeak_TextToPhonemes' phoneme mode: IPA in UTF-8
    Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.libc = ctypes.CDLL(None)
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        data_path = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(self.OUTPUT_SYNCHRONOUS, 0, data_path, self.DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data_path.decode()}")
        # Its sinc kernel built once: functional resample rebuilds it per call, half of a clip's cost.
        self.resample = torchaudio.transforms.Resample(self.sample_rate, SAMPLE_RATE)
        self.chunks: list[np.ndarray] = []
        self.callback = self.Callback(self._collect)  # kept referenced: espeak-ng calls it later
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, samples, count, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(samples, (count,)).copy())
        return 0  # continue synthesis

    def speak(
        self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, volume: int, seed: int
    ) -> torch.Tensor:
        """`text` as a float waveform at SAMPLE_RATE, leading and trailing silence trimmed."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
        parameters = {self.RATE: rate, self.VOLUME: volume, self.PITCH: pitch, self.RANGE: pitch_range}
        for parameter, value in parameters.items():
            self.lib.espeak_SetParameter(parameter, value, 0)
        # Breathy voices draw noise from espeak-ng's generator; "klatt 6" voices (caleb, Reed) from
        # speechPlayer's, which calls libc's rand(): a process-wide state that depends on what ran before.
        self.lib.espeak_ng_SetRandSeed(seed)
        self.libc.srand(seed)
        self.chunks.clear()
        encoded = text.encode()
        self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, self.POSITION_CHARACTER, 0, self.CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        wave = np.concatenate([np.zeros(0, np.int16), *self.chunks]).astype(np.float32) / FULL_SCALE
        return self.resample(trim_silence(wave, f"espeak-ng for {text!r} with voice {voice!r}"))

    def phonemes(self, text: str, voice: str) -> str:
        """`text` in IPA as `voice` (an accent such as en-us) pronounces it, words separated by spaces."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
        remaining = ctypes.c_char_p(text.encode())
        words = []
        while remaining.value:  # espeak-ng advances the pointer clause by clause, to NULL at the end
            words.append(self.lib.espeak_TextToPhonemes(ctypes.byref(remaining), self.CHARS_UTF8, self.IPA).decode())
        return " ".join(words)
