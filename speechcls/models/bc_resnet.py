"""BC-ResNet, a compact keyword-spotting network (Kim et al., "Broadcasted Residual Learning for
Efficient Keyword Spotting", Interspeech 2021), following the authors' reference implementation.

Each block convolves along frequency with 2-D depthwise filters, averages frequency away, convolves the
1-D result along time (dilated, depthwise), and broadcasts it back over frequency as a residual: most of
the cost of a 2-D network at a fraction of its parameters. `width` is the paper's tau: BC-ResNet-1 has
about 10 k parameters, BC-ResNet-8 about 0.3 M.
"""

from __future__ import annotations

import torch
from torch import nn


class SubSpectralNorm(nn.Module):
    """Batch norm with separate statistics for each of `sub_bands` frequency bands."""

    def __init__(self, channels: int, sub_bands: int) -> None:
        super().__init__()
        self.sub_bands = sub_bands
        self.norm = nn.BatchNorm2d(channels * sub_bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, freq, time = x.shape
        if freq % self.sub_bands:
            raise ValueError(f"SubSpectralNorm: {freq} frequency bins do not split into {self.sub_bands} sub-bands")
        bands = x.reshape(batch, channels * self.sub_bands, freq // self.sub_bands, time)
        return self.norm(bands).reshape(batch, channels, freq, time)


class BCBlock(nn.Module):
    """A broadcasted residual block; a transition block (channels change) has no identity shortcut."""

    def __init__(
        self, in_channels: int, out_channels: int, freq_stride: int, dilation: int, sub_bands: int, dropout: float
    ) -> None:
        super().__init__()
        self.transition = in_channels != out_channels
        layers = []
        if self.transition:
            layers += [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]
        layers += [
            nn.Conv2d(out_channels, out_channels, (3, 1), (freq_stride, 1), (1, 0), groups=out_channels, bias=False),
            SubSpectralNorm(out_channels, sub_bands),
        ]
        self.frequency = nn.Sequential(*layers)
        self.temporal = nn.Sequential(
            nn.Conv2d(
                out_channels, out_channels, (1, 3), padding=(0, dilation), dilation=(1, dilation),
                groups=out_channels, bias=False,
            ),  # fmt: skip
            nn.BatchNorm2d(out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 1, bias=False),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frequency = self.frequency(x)
        out = frequency + self.temporal(frequency.mean(dim=2, keepdim=True))
        if not self.transition:
            out = out + x
        return torch.relu(out)


class BCResNet(nn.Module):
    """Log-mels (batch, 1, n_mels, frames) -> class scores.

    Frequency is halved by the stem and by stages 2 and 3, so n_mels / 8 must split into `sub_bands`
    (64 mels: 8 bins into 4 bands; the paper's 40 mels used 5).
    """

    STAGE_BLOCKS = (2, 2, 4, 4)
    STRIDED_STAGES = (1, 2)

    def __init__(self, num_classes: int, width: int = 8, sub_bands: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        base = 8 * width
        channels = [2 * base, base, int(1.5 * base), 2 * base, int(2.5 * base), 4 * base]
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels[0], 5, (2, 1), 2, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU()
        )
        blocks = []
        for stage, count in enumerate(self.STAGE_BLOCKS):
            stride = 2 if stage in self.STRIDED_STAGES else 1
            for i in range(count):
                in_channels = channels[stage] if i == 0 else channels[stage + 1]
                blocks.append(
                    BCBlock(in_channels, channels[stage + 1], stride if i == 0 else 1, 2**stage, sub_bands, dropout)
                )
        self.blocks = nn.Sequential(*blocks)
        last = channels[-2]
        self.head = nn.Sequential(
            nn.Conv2d(last, last, 5, padding=(0, 2), groups=last, bias=False),
            nn.Conv2d(last, channels[-1], 1, bias=False),
            nn.BatchNorm2d(channels[-1]),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels[-1], num_classes, 1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))
