"""The update/weight-ratio diagnostic judges what the user chose: the configured optimizer.lr,
not a schedule's annealed lr, and not the optimiser's first steps. Real runs on digits."""

from __future__ import annotations

import pytest

from trainlab import diagnostics
from trainlab.config import compose
from trainlab.train import train

FAST = ["trainer.progress=never", "trainer.checkpoint=false", "model.depth=2", "model.width=32"]
RATIO = "update/weight ratio"


def ratio_lines(tmp_path, *overrides: str) -> list[str]:
    summary = train(compose([*FAST, *overrides]), tmp_path)
    return [line for line in summary["diagnostics"] if RATIO in line]


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_an_annealed_lr_is_not_a_too_small_lr(tmp_path, schedule):
    # 105 steps; the last capture at step 104, where the schedule's lr is ~1% of optimizer.lr
    found = ratio_lines(tmp_path, f"scheduler={schedule}", "optimizer=momentum",
                        "trainer.epochs=5", "stats.every=52")  # fmt: skip
    assert found == []


def test_adam_first_step_is_not_judged(tmp_path):
    # Adam's first update is lr * sign(grad): a ratio far above 1e-3 with optimizer.lr=0.01
    assert ratio_lines(tmp_path, "optimizer=adam", "optimizer.lr=0.01", "trainer.max_steps=1") == []


def test_a_too_small_lr_still_warns(tmp_path):
    found = ratio_lines(tmp_path, "optimizer=momentum", "optimizer.lr=1e-6", "trainer.epochs=3")
    assert len(found) == 1 and "too small: try a larger optimizer.lr" in found[0], found


def test_a_too_small_lr_warns_under_a_schedule_too(tmp_path):
    found = ratio_lines(tmp_path, "scheduler=cosine", "optimizer=momentum", "optimizer.lr=1e-6",
                        "trainer.epochs=5", "stats.every=52")  # fmt: skip
    assert len(found) == 1 and "at optimizer.lr (the schedule's lr here is" in found[0], found


def test_ratio_judged_against_the_schedules_factor():
    snap = diagnostics.Snapshot(step=100, lr_factor=0.01)
    row = {"weight_norm": 1.0, "grad_norm": 1.0, "update_ratio": 1e-5}
    snap.weights = {"blocks.0.fc.weight": row, "head.weight": row}
    assert diagnostics.update_ratio(snap) == []  # 1e-3 at the full lr: healthy
    snap.lr_factor = 1.0
    assert "too small" in diagnostics.update_ratio(snap)[0]
    snap.step = diagnostics.WARMUP_STEPS - 1
    assert diagnostics.update_ratio(snap) == []
