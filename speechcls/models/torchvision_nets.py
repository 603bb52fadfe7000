"""Torchvision image classifiers adapted to one-channel spectrograms."""

from __future__ import annotations

import torch
import torchvision
from torch import nn


class TorchvisionClassifier(nn.Module):
    """A torchvision architecture (`weights=None`) over (batch, 1, n_mels, frames) log-mels.

    `in_channels=1` swaps the first convolution for a one-channel one (no wasted 3x compute);
    `in_channels=3` replicates the spectrogram into three channels, as the tutorial did.
    `builder_options` go to the torchvision builder, e.g. `zero_init_residual=True` for ResNets.
    """

    def __init__(self, arch: str, num_classes: int, in_channels: int = 1, **builder_options) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.in_channels = in_channels
        self.net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **builder_options)
        if in_channels == 1:
            _replace_stem(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)


def _replace_stem(net: nn.Module) -> None:
    """Replace the first 3-channel convolution by the same convolution with one input channel."""
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                stem = nn.Conv2d(
                    1, child.out_channels, child.kernel_size, child.stride, child.padding, child.dilation,
                    bias=child.bias is not None,
                )
                setattr(parent, name, stem)
                return
    raise ValueError(f"{type(net).__name__} has no 3-channel convolution to replace")
