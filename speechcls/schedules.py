"""Learning-rate schedules that torch has only as parts."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.05, final_lr_fraction: float = 0.0
) -> LambdaLR:
    """Linear warmup over the first `warmup_fraction` of `total_steps`, then a cosine decay to
    `final_lr_fraction` of the learning rate at the last step. Step it once per optimizer step."""
    warmup_steps = max(1, round(warmup_fraction * total_steps))
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        return final_lr_fraction + (1 - final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
