"""Size and cost of a network: parameters and multiply-accumulates (MACs) per clip."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def count_macs(net: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one inference forward pass on `example` (one clip's input).

    Counted in eval mode so batch norm's running statistics stay untouched; torch's flop counter
    counts a multiply-accumulate as two operations.
    """
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(example)
    finally:
        net.train(was_training)
    return counter.get_total_flops() // 2
