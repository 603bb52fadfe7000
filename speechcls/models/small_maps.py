"""Convolutions over tiny feature maps, trained on a CPU, as unfold (im2col) and a matrix product.

oneDNN computes the weight gradient of a convolution whose output has only a few positions very
slowly: on the 2-core dev CPU (AMD EPYC, torch 2.14.1) a 3x3 512-channel convolution of ResNet18's
layer4 on the tutorial's 64x32 log-mels (2x1 maps, batch 64) took 63 ms forward and backward, 24 ms as
unfold + matmul, whose gradients are plain matrix products: layer4 alone was 45 % of a training step.
Maps of 8 or more positions were as fast or faster with oneDNN, so only smaller ones change path;
inference, tracing for export and other devices always take the ordinary one.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallMapConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state dict) that trains maps of few positions by matrix products."""

    # Output positions per example up to which unfold + matmul trained faster than oneDNN (measured).
    max_positions = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or not torch.is_grad_enabled() or x.device.type != "cpu":
            return super().forward(x)
        height, width = (
            (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
            for size, pad, dilation, kernel, stride in zip(
                x.shape[-2:], self.padding, self.dilation, self.kernel_size, self.stride
            )
        )
        if height * width > self.max_positions:
            return super().forward(x)
        columns = nn.functional.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        out = self.weight.flatten(1) @ columns  # (batch, out_channels, positions)
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.view(len(x), self.out_channels, height, width)


def train_small_maps_by_matrix_products(net: nn.Module) -> nn.Module:
    """`net` with every plain nn.Conv2d (zero padding, no groups) replaced by a SmallMapConv2d holding
    the same parameters, in place; the state dict keeps its keys and values."""
    for name, child in net.named_children():
        if type(child) is nn.Conv2d and child.groups == 1 and child.padding_mode == "zeros" and not isinstance(
            child.padding, str
        ):
            replacement = SmallMapConv2d(
                child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                child.dilation, bias=child.bias is not None, device=child.weight.device, dtype=child.weight.dtype,
            )
            replacement.weight, replacement.bias = child.weight, child.bias
            setattr(net, name, replacement)
        else:
            train_small_maps_by_matrix_products(child)
    return net
