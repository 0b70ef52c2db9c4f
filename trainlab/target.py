"""The training curve's running sums and the steps to a target training error, exact to the step.

A training step only hands its loss and logits to the `Tally` (`add`: references, no kernel, no
copy). At a host sync (every LOG_EVERY steps, at the end of an epoch, before a checkpoint)
`sync` turns the steps since the last one into (loss, correct) per step with a few batched
kernels and one host copy, then, on the host: the window since the last logged point, the
epoch's sums, and the sliding window of the last WINDOW steps behind "steps to target" (the
first step its training error is at most the target). A fused run's tally holds one row per
member. Its state is plain numbers, checkpointed with the run (`state`, `from_state`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

WINDOW = 10  # steps in the sliding window of the running training error


class Tally:
    """(loss sum, correct, examples) since the last logged point and over the epoch, and the
    target window, per member (1 for a run of its own)."""

    def __init__(self, members: int, target: float) -> None:
        self.members, self.target = members, target
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.window = [[0.0, 0.0, 0.0] for _ in range(members)]
        self.epoch = [[0.0, 0.0, 0.0] for _ in range(members)]
        self.ring: list[list[tuple[float, int]]] = [[] for _ in range(members)]  # oldest first
        self.hit = [-1] * members  # the step the windowed error reached the target; -1: not yet

    def add(self, step: int, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Optimiser step `step` (1-based): loss () or (K,), logits (..., C), labels (...)."""
        self.pending.append((step, loss.detach(), logits.detach(), y))

    def sync(self) -> None:
        """The pending steps, copied to the host in one go and added to every sum."""
        if not self.pending:
            return
        steps, losses, logits, ys = zip(*self.pending, strict=True)
        self.pending = []
        k = self.members
        if len({t.shape for t in logits}) == 1:  # (S, [K,] B, C): one argmax for all steps
            correct = (torch.stack(logits).argmax(-1) == torch.stack(ys)).sum(-1)
        else:  # an epoch's last, smaller batch among them
            correct = torch.stack(
                [(t.argmax(-1) == y).sum(-1) for t, y in zip(logits, ys, strict=True)]
            )
        loss_rows = torch.stack(losses).reshape(len(steps), k)
        rows = torch.cat([loss_rows, correct.reshape(len(steps), k)], 1).tolist()  # float32 losses
        for step, y, row in zip(steps, ys, rows, strict=True):
            n = y.shape[-1]
            for m in range(k):
                self._add_host(m, step, row[m] * n, row[k + m], n)

    def _add_host(self, m: int, step: int, loss_sum: float, correct: float, n: int) -> None:
        for sums in (self.window[m], self.epoch[m]):
            sums[0] += loss_sum
            sums[1] += correct
            sums[2] += n
        ring = self.ring[m]
        ring.append((correct, n))
        del ring[:-WINDOW]
        if self.hit[m] < 0 and 1 - sum(c for c, _ in ring) / sum(n for _, n in ring) <= self.target:
            self.hit[m] = step

    def take_window(self) -> list[list[float]]:
        """(loss sum, correct, examples) per member since the last call; synced first."""
        self.sync()
        window, self.window = self.window, [[0.0, 0.0, 0.0] for _ in range(self.members)]
        return window

    def new_epoch(self) -> None:
        self.epoch = [[0.0, 0.0, 0.0] for _ in range(self.members)]

    def finite(self, m: int = 0) -> bool:
        """Whether member m's losses so far this epoch (and in the window) are finite."""
        self.sync()
        return math.isfinite(self.epoch[m][0] + self.window[m][0])

    def state(self) -> dict[str, Any]:
        self.sync()
        return {"window": self.window, "epoch": self.epoch, "ring": self.ring, "hit": self.hit}

    def member(self, m: int) -> Tally:
        """Member m's own tally, as its separate run keeps it (a fused member's checkpoint)."""
        self.sync()
        own = Tally(1, self.target)
        own.window, own.epoch = [list(self.window[m])], [list(self.epoch[m])]
        own.ring, own.hit = [list(self.ring[m])], [self.hit[m]]
        return own

    @classmethod
    def from_state(cls, state: dict[str, Any], target: float) -> Tally:
        tally = cls(len(state["hit"]), target)
        tally.window = [list(w) for w in state["window"]]
        tally.epoch = [list(e) for e in state["epoch"]]
        tally.ring = [[(float(c), int(n)) for c, n in r] for r in state["ring"]]
        tally.hit = [int(h) for h in state["hit"]]
        return tally


def from_format3(state: dict[str, Any]) -> dict[str, Any]:
    """A format-3 checkpoint's device sums (window, epoch_sums, the ring indexed by step %
    WINDOW, target_hit) as a tally state: an older run resumes where it stopped."""
    step, ring = state["step"], state["target_ring"].tolist()
    slots = [ring[s % WINDOW] for s in range(max(1, step - WINDOW + 1), step + 1)]
    return {
        "window": [state["window"].tolist()],
        "epoch": [state["epoch_sums"].tolist()],
        "ring": [[(c, int(n)) for c, n in slots]],
        "hit": [int(state["target_hit"].item())],
    }


def found(
    hit: float, last_sync: tuple[int, float], step: int, seconds: float
) -> tuple[int, float] | None:
    """At a host sync (step, seconds since the start) after the previous one (`last_sync`):
    (steps, seconds) to the target, the seconds interpolated between the two syncs."""
    if hit < 0:
        return None
    s0, t0 = last_sync
    return int(hit), t0 + (hit - s0) / max(step - s0, 1) * (seconds - t0)
