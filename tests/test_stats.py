"""Per-layer statistics: hook names, no hooks left behind, shared modules rejected, values
finite on healthy models, non-finite values counted, diagnostics in plain words."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab import build, diagnostics
from trainlab.cli import conf_dir
from trainlab.config import compose
from trainlab.diagnostics import SCALAR_METRICS
from trainlab.models import activation_layers
from trainlab.stats import (
    INPUT,
    STATS,
    Monitor,
    SharedModuleError,
    tensor_histogram,
    tensor_stats,
)

ACTIVATIONS = sorted(p.stem for p in (Path(conf_dir()) / "activation").glob("*.yaml"))
SHAPES = {"mlp": (64,), "cnn": (1, 8, 8)}  # one example: features or a small grey image
SMALL = {"mlp": ["model.depth=3", "model.width=16"],
         "cnn": ["model.width=4", "model.head_width=8"]}  # fmt: skip


def make(model: str = "mlp", *overrides: str, seed: int = 0):
    """(cfg, model, x, y) for a freshly initialised small model and a random batch."""
    cfg = compose([f"model={model}", *SMALL[model], *overrides])
    torch.manual_seed(seed)
    net = build.build_model(cfg, SHAPES[model], 10)
    x = torch.randn(32, *SHAPES[model])
    return cfg, net, x, torch.randint(0, 10, (32,))


def step(
    monitor: Monitor,
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    step_no: int = 0,
    lr: float = 0.1,
) -> None:
    """One training step the way train.py calls the monitor."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    with monitor.capture(step_no):
        logits = net(x)
    optimizer.zero_grad()
    F.cross_entropy(logits, y).backward()
    monitor.after_backward(step_no)
    optimizer.step()
    monitor.after_step(step_no)


def hook_count(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_hook_names_are_the_activation_layers(model):
    cfg, net, x, y = make(model)
    monitor = Monitor(net, cfg)
    names = [name for name, _ in activation_layers(net)]
    assert monitor.layer_names == names and len(names) == (3 if model == "mlp" else 5)
    step(monitor, net, x, y)
    assert list(monitor.last.acts) == names
    assert list(monitor.last.inputs) == [INPUT]
    assert list(monitor.last.weights) == [
        f"{n}.weight" for n, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
    ]


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_values_finite_on_a_healthy_model(model, activation):
    cfg, net, x, y = make(model, f"activation={activation}", "stats.pre_activation=true")
    monitor = Monitor(net, cfg)
    step(monitor, net, x, y)
    snap = monitor.last
    rows = [*snap.inputs.values(), *snap.pre.values(), *snap.acts.values(), *snap.weights.values()]
    assert len(snap.pre) == len(snap.acts) > 0
    for row in rows:
        assert all(math.isfinite(v) for v in row.values()), row
    assert all(row["nonfinite"] == 0 for row in snap.acts.values())
    assert all(row["grad_norm"] > 0 and row["update_ratio"] > 0 for row in snap.weights.values())
    metrics = monitor.summary_metrics()
    for key in SCALAR_METRICS:
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
    assert len(metrics["act_std_step0"]) == len(snap.acts)


def test_hooks_only_while_capturing():
    cfg, net, x, y = make("mlp", "stats.every=3", "stats.histogram_every=6")
    monitor = Monitor(net, cfg)
    for step_no in range(7):
        with monitor.capture(step_no):
            expected = len(monitor.layer_names) + 1 if step_no % 3 == 0 else 0
            assert hook_count(net) == expected
            net(x)
        assert hook_count(net) == 0
    assert [monitor.capturing(s) for s in range(7)] == [s % 3 == 0 for s in range(7)]


class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


@pytest.mark.parametrize("where", ["first affine layer", "after an activation hook ran"])
def test_no_hooks_remain_when_forward_raises(where):
    cfg, net, x, y = make("mlp")
    if where == "first affine layer":
        x = torch.randn(4, 7)  # wrong feature count: the first Linear raises
    else:
        net.blocks[1].fc = Boom()  # blocks.0.act's hook has run by then
    monitor = Monitor(net, cfg)
    with pytest.raises(RuntimeError), monitor.capture(0):
        net(x)
    assert hook_count(net) == 0


def test_module_registered_twice_is_rejected():
    cfg, net, _, _ = make("mlp")
    net.blocks[1].act = net.blocks[0].act
    with pytest.raises(SharedModuleError, match="blocks.0.act.*blocks.1.act"):
        Monitor(net, cfg)


class CallsTwice(nn.Module):
    """A model whose one activation module runs at two call sites."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(nn.Sequential())
        self.blocks[0].fc = nn.Linear(8, 8)
        self.blocks[0].act = nn.ReLU()
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        block = self.blocks[0]
        return self.head(block.act(block.fc(block.act(x))))


def test_module_called_twice_is_rejected():
    cfg = compose([])
    net = CallsTwice()
    monitor = Monitor(net, cfg)
    with pytest.raises(SharedModuleError, match="ran twice"), monitor.capture(0):
        net(torch.randn(4, 8))
    assert hook_count(net) == 0


def test_tensor_stats_by_hand():
    y = torch.zeros(4, 3, 2, 2)  # (B, C, H, W): channel 0 active once, 1 and 2 dead
    y[2, 0, 1, 1] = 0.995
    mean, std, saturated, zeros, dead, nonfinite = tensor_stats(y, -0.99, 0.99).values()
    assert mean == pytest.approx(0.995 / 48) and std == pytest.approx(y.std(correction=0).item())
    assert saturated == pytest.approx(1 / 48) and zeros == pytest.approx(47 / 48)
    assert dead == pytest.approx(2 / 3) and nonfinite == 0
    features = torch.tensor([[0.0, 1.0, -2.0], [0.0, 3.0, 0.0]])  # (B, F): feature 0 dead
    stats = tensor_stats(features)
    assert tuple(stats) == STATS
    assert stats["dead"] == pytest.approx(1 / 3) and stats["saturated"] == 0


def test_nonfinite_values_are_counted_not_dropped():
    y = torch.tensor([[1.0, math.inf, 3.0], [math.nan, -math.inf, 5.0]])
    stats = tensor_stats(y, None, 4.0)
    assert stats["nonfinite"] == 3
    assert stats["mean"] == pytest.approx(3.0)  # of the finite 1, 3, 5
    assert stats["std"] == pytest.approx(torch.tensor([1.0, 3.0, 5.0]).std(correction=0).item())
    assert stats["saturated"] == pytest.approx(1 / 3)  # 5 >= 4; +inf is not counted as a value
    lo, hi, num, total, squares, *counts = tensor_histogram(y, bins=4).tolist()
    assert (lo, hi, num, total, squares) == (1.0, 5.0, 3.0, 9.0, 35.0)
    assert counts == [1.0, 0.0, 1.0, 1.0]


def test_nonfinite_stand_ins_are_not_counted_as_saturated_or_zero():
    y = torch.tensor([[math.nan, 0.005, 0.5, 0.995, 0.0, math.inf]])  # sigmoid-like bounds
    stats = tensor_stats(y, 0.01, 0.99)
    assert stats["nonfinite"] == 2
    assert stats["saturated"] == pytest.approx(3 / 4)  # 0.005, 0.995 and the true 0
    assert stats["zeros"] == pytest.approx(1 / 4)


def test_std_exact_for_a_tiny_spread_around_a_large_mean():
    y = 0.5 + 1e-4 * torch.randn(256, 64, generator=torch.Generator().manual_seed(0))
    stats = tensor_stats(y)
    assert stats["std"] == pytest.approx(y.double().std(correction=0).item(), rel=1e-3)
    assert stats["mean"] == pytest.approx(y.double().mean().item(), rel=1e-6)


def test_nonfinite_input_reaches_the_monitor():
    cfg, net, x, y = make("mlp")
    x[0, 0] = math.nan  # example 0 turns NaN in every unit of every layer
    x[1, 1] = math.inf
    monitor = Monitor(net, cfg)
    with monitor.capture(0):
        net(x)
    monitor.flush(0)
    snap = monitor.last
    assert snap.inputs[INPUT]["nonfinite"] == 2
    for row in snap.acts.values():
        assert row["nonfinite"] >= 16  # at least the NaN example's 16 units
        assert math.isfinite(row["mean"]) and math.isfinite(row["std"])
    assert any("non-finite" in line for line in monitor.diagnostics())


def test_max_batch_limits_the_examples_used():
    cfg, net, x, y = make("mlp", "stats.max_batch=8")
    x[8:] = math.nan  # beyond max_batch: never seen
    monitor = Monitor(net, cfg)
    with monitor.capture(0):
        net(x)
    monitor.flush(0)
    assert monitor.last.inputs[INPUT]["nonfinite"] == 0


def test_update_ratio_is_the_step_taken():
    cfg, net, x, y = make("mlp")
    before = net.blocks[0].fc.weight.detach().clone()
    monitor = Monitor(net, cfg)
    step(monitor, net, x, y, lr=0.5)
    after = net.blocks[0].fc.weight.detach()
    expected = ((after - before).norm() / before.norm()).item()
    row = monitor.last.weights["blocks.0.fc.weight"]
    assert row["update_ratio"] == pytest.approx(expected, rel=1e-5)
    assert row["weight_std"] == pytest.approx(before.std().item(), rel=1e-5)


def test_first_and_last_snapshots():
    cfg, net, x, y = make("mlp", "stats.every=2", "stats.histogram_every=4")
    monitor = Monitor(net, cfg)
    for step_no in range(5):
        step(monitor, net, x, y, step_no)
    assert monitor.first.step == 0 and monitor.last.step == 4
    assert set(monitor.last_hists) == {("input", INPUT)} | {("act", n) for n in monitor.layer_names}


def test_diagnostics_dead_relu():
    cfg, net, x, y = make("mlp", "activation=relu", "init.bias=-5")
    monitor = Monitor(net, cfg)
    step(monitor, net, x, y)
    lines = monitor.diagnostics()
    dead = [line for line in lines if "dead units" in line]
    assert dead and dead[-1].startswith("layer 3 (blocks.2.act, relu): 100% dead units")
    assert "leaky_relu" in dead[-1] and "bias 0.01" in dead[-1].replace("init.bias=", "bias ")
    assert monitor.summary_metrics()["dead_fraction_max"] == 1.0


def test_diagnostics_lecture_small_random_tanh():
    cfg = compose(["model.depth=10", "model.width=500", "activation=tanh", "init=small_random"])
    net = build.build_model(cfg, (500,), 10)
    monitor = Monitor(net, cfg)
    step(monitor, net, torch.randn(100, 500), torch.randint(0, 10, (100,)))
    lines = monitor.diagnostics()
    assert any(line.startswith("layer 2 (blocks.1.act, tanh): activation std") and "collapse"
               in line for line in lines), lines  # fmt: skip
    assert any("gradients vanish" in line for line in lines), lines
    metrics = monitor.summary_metrics()
    assert metrics["act_std_ratio_last_first"] < 1e-4


def test_diagnostics_saturated_and_update_ratio():
    snap = diagnostics.Snapshot(step=100, activation="tanh")
    snap.inputs[INPUT] = {"std": 1.0}
    snap.acts["blocks.0.act"] = {"std": 0.9, "saturated": 0.8, "dead": 0.0, "nonfinite": 0}
    snap.weights = {
        "blocks.0.fc.weight": {"weight_norm": 1.0, "grad_norm": 1.0, "update_ratio": 0.3},
        "head.weight": {"weight_norm": 1.0, "grad_norm": 1.0, "update_ratio": 0.2},
    }
    lines = diagnostics.diagnose(snap, snap)
    assert lines[0].startswith("layer 1 (blocks.0.act, tanh): 80% of activations saturated")
    assert lines[1].startswith("blocks.0.fc.weight: update/weight ratio 3.0e-01 at step 100")
    assert "smaller optimizer.lr" in lines[1]
    healthy = {"weight_norm": 1.0, "grad_norm": 1.0, "update_ratio": 1e-3}
    snap.weights = {"blocks.0.fc.weight": healthy, "head.weight": healthy}
    snap.acts["blocks.0.act"]["saturated"] = 0.01
    assert diagnostics.diagnose(snap, snap) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_host_sync_before_the_flush():
    cfg, net, x, y = make("cnn", "stats.pre_activation=true")
    net, x, y = net.cuda(), x.cuda(), y.cuda()
    monitor = Monitor(net, cfg)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any device-to-host sync raises
    try:
        with monitor.capture(0):
            logits = net(x)
        F.cross_entropy(logits, y).backward()
        monitor.after_backward(0)
        optimizer.step()
        update = monitor.update_norms()  # after_step, less its flush
    finally:
        torch.cuda.set_sync_debug_mode("default")
    monitor.flush(0, update)  # the one copy to the host
    assert all(math.isfinite(row["std"]) for row in monitor.last.acts.values())
