"""Steps to a target training error, exact to the step, found on the device.

The training error is taken over a sliding window of the last WINDOW steps (fewer at the
start). Every step updates the window and, the first time its error falls to the target,
records that step in a device scalar: no host sync per step. The training loop reads the
scalar at its own logging sync (`read`), so finding the step costs no extra sync.
"""

from __future__ import annotations

import torch

WINDOW = 10  # steps in the sliding window of the running training error


class StepsToTarget:
    def __init__(self, target_error: float, device: torch.device) -> None:
        self.target = target_error
        self.ring = torch.zeros(WINDOW, 2, device=device)  # (correct, examples) of the last steps
        self.hit = torch.full((), -1.0, device=device)  # the step it first got there; -1: not yet
        self.last_sync = (0, 0.0)  # (step, seconds) of the loop's previous host sync

    def update(self, step: int, correct: torch.Tensor, n: torch.Tensor) -> None:
        """After optimiser step `step` (1-based): that batch's correct count and size."""
        self.ring[step % WINDOW] = torch.stack([correct.float(), n.float()])
        totals = self.ring.sum(0)
        reached = (1 - totals[0] / totals[1] <= self.target) & (self.hit < 0)
        self.hit = torch.where(reached, torch.full_like(self.hit, step), self.hit)

    def pack(self, window: torch.Tensor) -> torch.Tensor:
        """`window` with the hit step appended: the loop's one host copy carries both."""
        return torch.cat([window, self.hit.reshape(1)])

    def found(self, hit: float, step: int, seconds: float) -> tuple[int, float] | None:
        """At a host sync (step, seconds since the start), with the read `hit`: (steps, seconds)
        to the target, the seconds interpolated between this sync and the previous one."""
        (s0, t0), self.last_sync = self.last_sync, (step, seconds)
        if hit < 0:
            return None
        return int(hit), t0 + (hit - s0) / max(step - s0, 1) * (seconds - t0)
