"""Convolutions over tiny feature maps, trained on a CPU, as unfold (im2col) and a matrix product.

oneDNN computes the weight gradient of a convolution whose output has only a few positions very
slowly (ResNet18's layer4 on the tutorial's 64x32 log-mels has 2x1 maps), while unfold + matmul has
plain matrix products for gradients. Maps of 8 or more positions were as fast or faster with oneDNN, so
only smaller ones change path; inference, tracing for export and other devices always take the
ordinary one. `speechcls.callbacks.CPUTuning` applies it to CPU training; docs/benchmarks.md has the
step times.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallMapConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state dict) that trains maps of few positions by matrix products.

    Kernel taps that meet only zero padding at every output position are left out of the product: a
    3x3 convolution over ResNet18's 2x1 layer4 maps multiplies 3 of its 9 taps by data, so a third
    of the work remains (their weights get the zero gradient they get from nn.Conv2d).
    """

    # Output positions per example up to which unfold + matmul trained faster than oneDNN (measured).
    max_positions = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or not torch.is_grad_enabled() or x.device.type != "cpu":
            return super().forward(x)
        (height, rows, top, bottom), (width, columns, left, right) = (
            _live_taps(size, kernel, stride, padding, dilation)
            for size, kernel, stride, padding, dilation in zip(
                x.shape[-2:], self.kernel_size, self.stride, self.padding, self.dilation
            )
        )
        if height * width > self.max_positions:
            return super().forward(x)
        weight = self.weight[:, :, rows, columns]
        patches = nn.functional.unfold(
            nn.functional.pad(x, (left, right, top, bottom)), weight.shape[-2:], self.dilation, 0, self.stride
        )
        out = weight.flatten(1) @ patches  # (batch, out_channels, positions)
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.view(len(x), self.out_channels, height, width)


def _live_taps(size: int, kernel: int, stride: int, padding: int, dilation: int) -> tuple[int, slice, int, int]:
    """Along one axis: the output size, the span of kernel taps that reach the input at some output
    position, and the padding before/after the input (negative: a crop) for a convolution of that span."""
    outputs = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    live = [
        tap for tap in range(kernel)
        if any(0 <= position * stride - padding + tap * dilation < size for position in range(outputs))
    ]
    first, last = (live[0], live[-1]) if live else (0, kernel - 1)
    before = padding - first * dilation
    after = (outputs - 1) * stride - padding + last * dilation - (size - 1)
    return outputs, slice(first, last + 1), before, after


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
