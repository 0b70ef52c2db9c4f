"""Learning-rate schedules as `main(optimizer, total_steps)` factories over torch's schedulers.

Every schedule is stepped once per optimiser step. `with_warmup` prepends a linear warmup.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim import lr_scheduler as sched

Schedule = Callable[[Optimizer, int], sched.LRScheduler]


def constant(optimizer: Optimizer, total_steps: int) -> sched.LRScheduler:
    return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)


def step(optimizer: Optimizer, total_steps: int, every: float = 0.3, gamma: float = 0.1):
    """Multiply the lr by `gamma` every `every` (a fraction of the run's steps)."""
    return sched.StepLR(optimizer, step_size=max(1, round(every * total_steps)), gamma=gamma)


def cosine(optimizer: Optimizer, total_steps: int, eta_min: float = 0.0):
    return sched.CosineAnnealingLR(optimizer, T_max=max(1, total_steps), eta_min=eta_min)


def linear(optimizer: Optimizer, total_steps: int, end_factor: float = 0.0):
    # LinearLR divides by start_factor internally, so end at a tiny positive factor, not 0
    return sched.LinearLR(
        optimizer,
        start_factor=1.0,
        end_factor=max(end_factor, 1e-8),
        total_iters=max(1, total_steps),
    )


class _InverseSqrt:
    """lr factor min(1, sqrt(timescale / step)): flat, then 1/sqrt(step) decay."""

    def __init__(self, timescale: int) -> None:
        self.timescale = timescale

    def __call__(self, step: int) -> float:
        return min(1.0, (self.timescale / max(step, 1)) ** 0.5)


def inverse_sqrt(optimizer: Optimizer, total_steps: int, timescale: int = 100):
    return sched.LambdaLR(optimizer, _InverseSqrt(timescale))


def with_warmup(
    optimizer: Optimizer,
    main: Schedule,
    total_steps: int,
    warmup_steps: int,
    start_factor: float = 0.01,
) -> sched.LRScheduler:
    """Linear warmup from `start_factor * lr` over `warmup_steps`, then `main` on the rest."""
    if warmup_steps <= 0:
        return main(optimizer, total_steps)
    warmup = sched.LinearLR(optimizer, start_factor=start_factor, total_iters=warmup_steps)
    rest = main(optimizer, max(1, total_steps - warmup_steps))
    return sched.SequentialLR(optimizer, [warmup, rest], milestones=[warmup_steps])
