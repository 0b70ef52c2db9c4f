"""Steps to a target training error, exact to the step, found on the device.

The training error is taken over a sliding window of the last WINDOW steps (fewer at the
start). Every step updates the window and, the first time its error falls to the target,
records that step in a device scalar: no host sync per step. The training loop reads the
scalar with its own logging sync (`pack`), so finding the step costs no extra sync. The state
(`ring`, `hit`, `last_sync`) lives in the run and is checkpointed with it.
"""

from __future__ import annotations

import torch

WINDOW = 10  # steps in the sliding window of the running training error


def new_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ring: (correct, examples) of the last WINDOW steps, hit: the step it first got there)."""
    return torch.zeros(WINDOW, 2, device=device), torch.full((), -1.0, device=device)


def update(
    ring: torch.Tensor,
    hit: torch.Tensor,
    step: int,
    correct: torch.Tensor,
    n: torch.Tensor,
    target: float,
) -> torch.Tensor:
    """After optimiser step `step` (1-based) on a batch with `correct` of `n` right: the new hit
    (-1 while the windowed training error is above `target`)."""
    ring[step % WINDOW] = torch.stack([correct.float(), n.float()])
    totals = ring.sum(0)
    reached = (1 - totals[0] / totals[1] <= target) & (hit < 0)
    return torch.where(reached, step, hit)


def pack(window: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """`window` with the hit step appended: the loop's one host copy carries both."""
    return torch.cat([window, hit.reshape(1)])


def found(
    hit: float, last_sync: tuple[int, float], step: int, seconds: float
) -> tuple[int, float] | None:
    """At a host sync (step, seconds since the start) after the previous one (`last_sync`):
    (steps, seconds) to the target, the seconds interpolated between the two syncs."""
    if hit < 0:
        return None
    s0, t0 = last_sync
    return int(hit), t0 + (hit - s0) / max(step - s0, 1) * (seconds - t0)
