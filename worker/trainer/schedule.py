"""Learning-rate schedules as multipliers of the peak rate, for `LambdaLR`.

`step` counts optimizer updates already taken, so the first update uses multiplier(0). Every
schedule rises linearly over the warmup steps, then stays (constant) or decays to 0 at
`total_steps` along a line (linear) or a half cosine (cosine).
"""

import math
from collections.abc import Callable

SCHEDULES = ("linear", "cosine", "constant")


def warmup_multiplier(step: int, warmup_steps: int) -> float:
    """Return the warmup multiplier (step + 1) / (warmup_steps + 1) of a step in the warmup."""
    return (step + 1) / (warmup_steps + 1)


def warmup_linear_decay(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Rise linearly from 0 to 1 over `warmup_steps`, then fall linearly to 0 at `total_steps`."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return warmup_multiplier(step, warmup_steps)
        remaining = total_steps - step
        return max(0.0, remaining / max(1, total_steps - warmup_steps))

    return multiplier


def warmup_cosine_decay(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Rise linearly over `warmup_steps`, then follow 0.5·(1 + cos(π·progress)) down to 0."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return warmup_multiplier(step, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


def warmup_constant(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Rise linearly over `warmup_steps`, then stay at 1."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return warmup_multiplier(step, warmup_steps)
        return 1.0

    return multiplier


def build_schedule(name: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Return the multiplier function of schedule `name` (one of `SCHEDULES`)."""
    builders = {
        "linear": warmup_linear_decay,
        "cosine": warmup_cosine_decay,
        "constant": warmup_constant,
    }
    if name not in builders:
        raise ValueError(f"Unknown learning-rate schedule {name!r}, expected one of {SCHEDULES}.")
    return builders[name](total_steps, warmup_steps)


def resolve_warmup_steps(total_steps: int, warmup_ratio: float, warmup_steps: int | None) -> int:
    """Return the warmup length in steps: `warmup_steps` if set, else the ratio of the total."""
    if warmup_steps is not None:
        return min(warmup_steps, total_steps)
    return int(warmup_ratio * total_steps)
