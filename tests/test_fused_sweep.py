"""The default launcher trains a sweep's seeds as one fused model; a switch turns it off."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainlab.sweep_fusion import seed_groups

TINY = [
    "trainer.epochs=1",
    "model.width=16",
    "threads=1",  # statistics on, as by default
    "hydra.launcher.n_jobs=1",
]  # one process: a group is never split between workers


def sweep(tmp_path: Path, *args: str, activations: str = "relu,tanh") -> list[dict]:
    cmd = [sys.executable, "-m", "trainlab", "train", "-m", "seed=0,1,2", f"activation={activations}",
           *TINY, *args, f"hydra.sweep.dir={tmp_path}/sweep"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    paths = sorted((tmp_path / "sweep").glob("*/seed=*/summary.json"))
    assert len(paths) == 6
    for p in paths:
        assert (p.parent / ".hydra" / "overrides.yaml").is_file()  # every job its own record
        assert (p.parent / "predictions.npz").is_file()  # for compare's ensembles, fused or not
    sweep_dir = tmp_path / "sweep"
    table = (sweep_dir / "comparison.csv").read_text()
    assert "never started" not in (sweep_dir / "comparison.md").read_text()
    assert table.count("\n") >= 3  # a header and both groups
    return [json.loads(p.read_text()) for p in paths]


def test_seed_groups_are_the_jobs_equal_but_for_the_seed():
    jobs = [["a=1", "seed=0"], ["a=2", "seed=0"], ["seed=1", "a=1"], ["a=3"], ["a=2", "+seed=5"]]
    assert seed_groups(jobs) == {0: [0, 2], 1: [1, 4]}
    jobs = [["optimizer.lr=0.1", "seed=0"], ["optimizer.lr=1", "seed=0"], ["init=zeros", "a=1"],
            ["init.weight.std=2", "+seed=1"], ["a=1"], ["optimizer.lr=0.1", "seed=1"]]  # fmt: skip
    assert seed_groups(jobs) == {0: [0, 5]}  # seeds only
    assert seed_groups(jobs, values=True) == {0: [0, 1, 3, 5], 2: [2, 4]}
    decays = [["regularizer.weight_decay=1e-4", "seed=0"], ["regularizer.weight_decay=1e-2"],
              ["regularizer.l1=1e-2", "seed=0"]]  # fmt: skip
    assert seed_groups(decays) == {} and seed_groups(decays, values=True) == {0: [0, 1]}


@pytest.mark.parametrize("fuse", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_a_sweep_fuses_its_seeds_by_default_and_not_when_switched_off(fuse, tmp_path):
    summaries = sweep(tmp_path, f"hydra.launcher.fuse={str(fuse).lower()}")
    assert all(s["status"] == "completed" for s in summaries)
    assert all(("fused" in s) == fuse for s in summaries)
    assert all("act_std_first" in s["metrics"] for s in summaries)  # statistics per member
    if fuse:  # relu and tanh, three seeds each: one model
        assert sorted(s["fused"]["members"] for s in summaries) == [6] * 6
        assert all(
            sorted(s["fused"]["activation"]) == ["relu"] * 3 + ["tanh"] * 3 for s in summaries
        )


@pytest.mark.slow  # ~10 s: a real sweep
def test_a_sweep_falls_back_to_separate_jobs_where_fusion_does_not_apply(tmp_path):
    summaries = sweep(tmp_path, "trainer.ema_decay=0.9")  # averaged weights: not fused
    assert all(s["status"] == "completed" and "fused" not in s for s in summaries)


@pytest.mark.parametrize("values", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_a_sweep_fuses_the_jobs_that_differ_in_lr_unless_switched_off(values, tmp_path):
    summaries = sweep(tmp_path, "optimizer.lr=0.01,0.1", f"hydra.launcher.fuse_values={str(values).lower()}",
                      activations="relu")  # fmt: skip
    assert all(s["status"] == "completed" for s in summaries)
    assert sorted(s["fused"]["members"] for s in summaries) == [6 if values else 3] * 6
    assert all(("lr" in s["fused"]) == values for s in summaries)
