"""Learning-rate schedules as multipliers of the peak rate, for `LambdaLR`."""

from collections.abc import Callable


def warmup_linear_decay(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Rise linearly from 0 to 1 over `warmup_steps`, then fall linearly to 0 at `total_steps`.

    `step` counts optimizer updates already taken, so the first update uses multiplier(0).
    """

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        remaining = total_steps - step
        return max(0.0, remaining / max(1, total_steps - warmup_steps))

    return multiplier
