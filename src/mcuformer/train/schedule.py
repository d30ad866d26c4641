"""Learning rate: linear warm-up then cosine decay, as a pure function of the step (nothing to save)."""

import math


def lr_at(step: int, *, total_steps: int, warmup_steps: int, lr: float, min_lr: float, warmup_lr: float) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_lr + (lr - warmup_lr) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
