"""Channel and room simulation of the two-engine synthetic set: what a microphone, a room and a phone
line do to a clip, drawn per clip (`speechcls.synth.speech_set` records the drawn values in clips.csv).

Conditions, one per clip: `clean`; `phone` (300-3400 Hz band, 8 kHz sampling and a GSM full-rate or
low-bitrate MP3 codec, from pedalboard); `small_room` and `large_room` (image-source impulse responses
of a shoebox room from pyroomacoustics, source at a drawn distance from the microphone). Independently,
part of the clips get microphone colouring: random low-shelf, presence-peak and high-shelf gains.
Background noise is added by the set itself, before the channel, so a room reverberates it too.

Needs the `voices` extra (pip install -e '.[voices]').
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pedalboard
import pyroomacoustics
import torch
import torchaudio.functional as AF

from speechcls.audio import SAMPLE_RATE

CONDITIONS = ("clean", "phone", "small_room", "large_room")
PHONE_CODECS = ("gsm", "mp3")
# Image sources up to this reflection order: 40 ms for a 1 s RT60 hall, whose tail the clip cuts anyway.
MAX_REFLECTION_ORDER = 30


@dataclass
class Channel:
    """Probabilities of the conditions and ranges (low, high) drawn uniformly per clip.

    Rooms are (length, width, height) in metres, drawn per axis; distance is from the talker's mouth
    to the microphone in metres; rt60 is the reverberation time in seconds.
    """

    weights: Mapping[str, float] = field(
        default_factory=lambda: {"clean": 0.25, "phone": 0.25, "small_room": 0.25, "large_room": 0.25}
    )
    small_room: Sequence[Sequence[float]] = ((3.0, 5.0), (2.5, 4.0), (2.4, 3.0))
    small_rt60: Sequence[float] = (0.15, 0.45)
    small_distance: Sequence[float] = (0.3, 1.5)
    large_room: Sequence[Sequence[float]] = ((8.0, 15.0), (6.0, 10.0), (3.0, 5.0))
    large_rt60: Sequence[float] = (0.5, 1.2)
    large_distance: Sequence[float] = (1.0, 4.0)
    mp3_vbr_quality: Sequence[float] = (6.0, 9.0)  # LAME's VBR scale, 9 the lowest bitrate
    mic_probability: float = 0.5
    mic_gain_db: Sequence[float] = (-8.0, 8.0)

    def __post_init__(self) -> None:
        # Hydra passes DictConfig and ListConfig: plain values compare with and dump into the manifest.
        self.weights = {str(name): float(weight) for name, weight in self.weights.items()}
        self.small_room = tuple(tuple(side) for side in self.small_room)
        self.large_room = tuple(tuple(side) for side in self.large_room)
        for name in ("small_rt60", "small_distance", "large_rt60", "large_distance", "mp3_vbr_quality", "mic_gain_db"):
            setattr(self, name, tuple(getattr(self, name)))
        unknown = set(self.weights) - set(CONDITIONS)
        if unknown or sum(self.weights.values()) <= 0:
            raise ValueError(f"channel weights {self.weights}: use positive weights of {CONDITIONS}")

    def draw(self, rng: np.random.Generator) -> dict:
        """One clip's channel as a clips.csv row part (values rounded, then used as recorded)."""
        names = list(self.weights)
        weights = np.array([self.weights[name] for name in names])
        condition = names[rng.choice(len(names), p=weights / weights.sum())]
        row = {"channel": condition, "codec": None, "room_m": None, "rt60_s": None, "distance_m": None, "room_seed": None}
        if condition == "phone":
            row["codec"] = str(rng.choice(PHONE_CODECS))
            if row["codec"] == "mp3":
                row["codec"] = f"mp3-v{rng.uniform(*self.mp3_vbr_quality):.1f}"
        elif condition in ("small_room", "large_room"):
            size = "small" if condition == "small_room" else "large"
            room = [round(rng.uniform(*side), 2) for side in getattr(self, f"{size}_room")]
            row["room_m"] = "x".join(f"{side:g}" for side in room)
            row["rt60_s"] = round(rng.uniform(*getattr(self, f"{size}_rt60")), 2)
            row["distance_m"] = round(rng.uniform(*getattr(self, f"{size}_distance")), 2)
            row["room_seed"] = int(rng.integers(2**31))
        row["mic_eq_db"] = None
        if rng.random() < self.mic_probability:  # low shelf 200 Hz, presence peak 2.5 kHz, high shelf 6 kHz
            row["mic_eq_db"] = "/".join(f"{rng.uniform(*self.mic_gain_db):+.1f}" for _ in range(3))
        return row

    def apply(self, clip: torch.Tensor, row: dict) -> torch.Tensor:
        """`clip` (1-D, SAMPLE_RATE) through the channel `row` describes; same length, float32."""
        condition = row["channel"]
        if condition in ("small_room", "large_room"):
            impulse = torch.from_numpy(room_impulse_response(row).astype(np.float32))
            clip = AF.fftconvolve(clip, impulse)[: len(clip)]
        audio = clip.numpy().astype(np.float32)
        effects = []
        if row.get("mic_eq_db"):
            low, presence, high = (float(gain) for gain in row["mic_eq_db"].split("/"))
            effects += [
                pedalboard.LowShelfFilter(200.0, low),
                pedalboard.PeakFilter(2500.0, presence, 1.0),
                pedalboard.HighShelfFilter(6000.0, high),
            ]
        if condition == "phone":
            # Sampled at 8 kHz (nothing above 4 kHz), the line's 300-3400 Hz roll-offs, then the codec.
            effects += [pedalboard.Resample(8000.0), pedalboard.HighpassFilter(300.0), pedalboard.LowpassFilter(3400.0)]
            if row["codec"] == "gsm":
                effects.append(pedalboard.GSMFullRateCompressor())
            else:
                effects.append(pedalboard.MP3Compressor(float(row["codec"].removeprefix("mp3-v"))))
        if effects:
            audio = pedalboard.Pedalboard(effects)(audio, SAMPLE_RATE)
        out = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        if len(out) != len(clip) or not torch.isfinite(out).all():
            raise RuntimeError(f"channel {row} gave {len(out)} samples (finite: {bool(torch.isfinite(out).all())})")
        return out


def named_condition(name: str) -> dict:
    """The row `Channel.apply` takes for a named fixed channel: `phone-gsm` or `phone-mp3-v<quality>`
    (e.g. phone-mp3-v9.0), without microphone colouring: a stream heard through a phone line."""
    condition, _, codec = name.partition("-")
    if condition != "phone" or not (codec == "gsm" or codec.startswith("mp3-v")):
        raise ValueError(f"channel {name!r}: expected none, phone-gsm or phone-mp3-v<quality> (e.g. phone-mp3-v9.0)")
    return {"channel": condition, "codec": codec, "mic_eq_db": None}


def room_impulse_response(row: dict) -> np.ndarray:
    """The impulse response of the room in `row` (room_m, rt60_s, distance_m, room_seed), peak 1."""
    room = np.array([float(side) for side in row["room_m"].split("x")])
    rng = np.random.default_rng(row["room_seed"])
    distance = row["distance_m"]
    # The microphone away from the walls, the talker at the drawn distance in a random direction
    # that stays inside the room (a few tries, then the nearest point inside).
    margin = 0.3
    microphone = rng.uniform(margin, room - margin)
    for _ in range(20):
        direction = rng.standard_normal(3)
        source = microphone + distance * direction / np.linalg.norm(direction)
        if np.all((source > margin) & (source < room - margin)):
            break
    source = np.clip(source, margin, room - margin)
    absorption, order = pyroomacoustics.inverse_sabine(row["rt60_s"], room)
    shoebox = pyroomacoustics.ShoeBox(
        room,
        fs=SAMPLE_RATE,
        materials=pyroomacoustics.Material(absorption),
        max_order=min(order, MAX_REFLECTION_ORDER),
        air_absorption=False,
    )
    shoebox.add_source(source)
    shoebox.add_microphone(microphone)
    shoebox.compute_rir()
    impulse = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    return impulse / np.abs(impulse).max()
