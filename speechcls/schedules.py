"""Linear warmup, then cosine decay over the whole run, from torch's own schedulers.

SequentialLR takes schedulers already built on the optimizer, and the cosine's length is the run's
minus the warmup: neither can be written in a config, so this function builds them once
configure_optimizers knows the optimizer and the run's length (`total_steps`)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.05, eta_min: float = 0.0
) -> SequentialLR:
    """Warm up linearly over the first `warmup_fraction` of `total_steps` (from 1/(w+1) of the learning
    rate, w the warmup steps, to all of it), then decay along a cosine to `eta_min` at the last step.
    Step it once per optimizer step."""
    warmup_steps = max(1, round(warmup_fraction * total_steps))
    warmup = LinearLR(optimizer, start_factor=1 / (warmup_steps + 1), total_iters=warmup_steps)
    decay = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=eta_min)
    return SequentialLR(optimizer, [warmup, decay], milestones=[warmup_steps])
