"""Per-layer statistics during training (issue 3 fills this in).

Interface used by train.py:
    monitor = Monitor(model, cfg, writer)
    with monitor.capture(step): logits = model(x)   # hooks only on capture steps
    monitor.after_backward(step); optimizer.step(); monitor.after_step(step)
    monitor.summary_metrics() -> dict[str, float]; monitor.diagnostics() -> list[str]
"""

from __future__ import annotations

from contextlib import nullcontext

from omegaconf import DictConfig
from torch import nn


class Monitor:
    def __init__(self, model: nn.Module, cfg: DictConfig, writer) -> None:
        self.model, self.cfg, self.writer = model, cfg, writer

    def capture(self, step: int):
        return nullcontext()

    def after_backward(self, step: int) -> None:
        pass

    def after_step(self, step: int) -> None:
        pass

    def summary_metrics(self) -> dict[str, float]:
        return {}

    def diagnostics(self) -> list[str]:
        return []
