"""Gradient checking: every activation, norm and model option passes in float64; a layer with
a wrong backward fails it, through the same config path (`activation.layer._target_`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from trainlab.cli import conf_dir
from trainlab.config import compose
from trainlab.gradcheck import (
    ACCEPTABLE,
    WRONG,
    check_gradients,
    gradcheck,
    passed,
    reading,
    relative_error,
)

CONF = Path(conf_dir())
# width 16: group norm's 8 groups get 2 units each (1 unit per group is a constant output, whose
# relu input is round-off around 0: no finite difference sees that kink)
SMALL = ["model.width=16", "model.depth=2", "gradcheck.samples=4"]
CNN = ["model=cnn", "model.width=4", "model.head_width=8", "model.depth=1"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if "schema" not in p.stem)


CASES = (
    [[f"activation={a}"] for a in options("activation")]
    + [[f"norm={n}"] for n in options("norm")]
    + [[*CNN, f"norm={n}"] for n in options("norm")]
    + [[*CNN, "activation=maxout", "norm=batch"]]
    + [[f"regularizer={r}"] for r in options("regularizer")]
    + [["regularizer=l1", "regularizer.l1=0.01"]]
)


class _WrongTanhFn(torch.autograd.Function):
    """tanh whose backward forgets the square: 1 - y instead of 1 - y^2."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y)


class WrongTanh(nn.Module):
    """Test-only activation with a wrong backward (targeted from the config below)."""

    def forward(self, x):
        return _WrongTanhFn.apply(x)


@pytest.mark.parametrize("overrides", CASES, ids=[",".join(c) for c in CASES])
def test_every_option_passes(overrides: list[str], tmp_path: Path) -> None:
    rows = gradcheck(compose([*SMALL, *overrides]), tmp_path)
    assert passed(rows), rows
    assert all(r["checked"] >= 1 for r in rows)
    names = {r["layer"] for r in rows}
    assert "head.weight" in names and any(n.startswith("blocks.0.") for n in names)
    saved = json.loads((tmp_path / "gradcheck.json").read_text())
    assert saved["max_rel_error"] == max(r["max_rel_error"] for r in rows)


def test_a_wrong_backward_fails(tmp_path: Path) -> None:
    broken = ["activation=tanh", f"activation.layer._target_={__name__}.WrongTanh"]
    rows = gradcheck(compose([*SMALL, *broken]), tmp_path)
    assert not passed(rows)
    first = next(r for r in rows if r["layer"] == "blocks.0.fc.weight")
    assert first["max_rel_error"] > 1e-2 and first["reading"] == WRONG
    head = next(r for r in rows if r["layer"] == "head.weight")  # after the last tanh: right
    assert head["max_rel_error"] <= ACCEPTABLE


def test_a_weight_exactly_at_a_kink_matches_a_one_sided_slope() -> None:
    model = nn.Linear(1, 1)
    nn.init.zeros_(model.weight), nn.init.zeros_(model.bias)  # relu input exactly 0
    x = torch.ones(1, 1, dtype=torch.float64)
    model.double()
    rows = check_gradients(model, lambda: torch.relu(model(x)).sum(), 1, 1e-5, 1e-6)
    assert passed(rows) and all(r["kinks"] == 1 for r in rows)  # centred: 0.5, autograd: 0


def test_readings_follow_the_lecture() -> None:
    assert reading(1e-9) == "fine"
    assert reading(1e-5) == "acceptable with kinks"
    assert reading(1e-3) == "uncomfortable"
    assert reading(0.5) == WRONG
    assert relative_error(1.0, 1.0 + 1e-8, tiny=1e-6) == pytest.approx(1e-8, rel=1e-3)
    assert relative_error(1e-9, 0.0, tiny=1e-6) == pytest.approx(1e-3)  # floor: rounding


@pytest.mark.slow  # ~8 s: the console script
def test_console_command(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("trainlab"))
    args = [exe, "gradcheck", *SMALL, "activation=gelu", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "worst relative error" in proc.stdout and "blocks.1.fc.weight" in proc.stdout
    bad = subprocess.run(
        [*args, "gradcheck.samples=0"], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert bad.returncode == 2 and "gradcheck.samples=0" in bad.stderr
