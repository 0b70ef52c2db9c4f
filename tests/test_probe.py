"""`trainlab probe`: the lecture's table for a 10-layer tanh MLP with W = 0.01 * randn."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainlab.config import compose
from trainlab.probe import probe

LECTURE = ["model=mlp", "model.depth=10", "model.width=500", "activation=tanh",
           "init=small_random", "norm=none", "data=gaussian", "preprocess=none"]  # fmt: skip
# the lecture's table (input, then hidden layers 1-10): std of each layer at initialisation
LECTURE_STD = [0.998388, 0.213081, 0.047551, 0.010630, 0.002378, 0.000532, 0.000119,
               0.000026, 0.000006, 0.000001, 0.000000]  # fmt: skip


@pytest.fixture(scope="module")
def lecture(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("probe")
    return probe(compose(LECTURE), run_dir), run_dir


def test_reproduces_the_lecture_table(lecture):
    layers, _ = lecture
    assert [row["name"] for row in layers] == ["input"] + [f"blocks.{i}.act" for i in range(10)]
    for row, expected in zip(layers[:7], LECTURE_STD[:7], strict=True):  # input + 6 layers
        assert row["std"] == pytest.approx(expected, rel=0.10), row
        assert abs(row["mean"]) < 0.01
    stds = [row["std"] for row in layers]
    assert all(b < 0.3 * a for a, b in zip(stds[1:], stds[2:], strict=False))  # shrinks ~4.5x
    assert stds[-1] < 1e-5
    assert all(row["saturated"] == 0 and row["dead"] == 0 for row in layers[1:])
    assert all(0 < row["grad_norm"] < 1e-5 for row in layers[1:])


def test_writes_json_figure_events_and_diagnostics(lecture, capsys):
    layers, run_dir = lecture
    saved = json.loads((run_dir / "probe.json").read_text())
    assert saved[0]["name"] == "input" and all({"name", "mean", "std"} <= set(r) for r in saved)
    assert [r["name"] for r in saved] == [r["name"] for r in layers]
    assert (run_dir / "probe.png").stat().st_size > 10_000
    lines = json.loads((run_dir / "diagnostics.json").read_text())
    assert any("layer 2 (blocks.1.act, tanh)" in line and "collapse" in line for line in lines)
    acc = EventAccumulator(str(run_dir), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    hists = acc.Tags()["histograms"]
    assert {"act_hist/input"} | {f"act_hist/blocks.{i}.act" for i in range(10)} <= set(hists)
    assert [e.step for e in acc.Histograms("act_hist/blocks.0.act")] == [0]
    assert acc.Scalars("act_std/blocks.1.act")[0].value == pytest.approx(layers[2]["std"])


def test_prints_the_table(tmp_path, capsys):
    probe(compose(["data.subset=64", "model.depth=2", "model.width=16"]), tmp_path)
    out = capsys.readouterr().out
    header, _, input_row, first, second = out.splitlines()[:5]
    assert header.split() == ["layer", "activation", "mean", "std", "saturated", "dead", "grad",
                              "norm"]  # fmt: skip
    assert input_row.startswith("input") and first.startswith("1 blocks.0.act     relu")
    assert second.startswith("2 blocks.1.act")
    assert "64 examples | loss" in out


def test_cnn_with_pre_activations(tmp_path):
    layers = probe(
        compose(
            [
                "model=cnn",
                "model.width=4",
                "model.head_width=8",
                "data.subset=32",
                "norm=batch",
                "stats.pre_activation=true",
            ]
        ),
        tmp_path,
    )
    assert [r["name"] for r in layers] == [
        "input",
        "blocks.0.act",
        "blocks.1.act",
        "blocks.3.act",
        "blocks.4.act",
        "hidden.act",
    ]
    assert (
        layers[1]["weight"] == "blocks.0.conv.weight" and layers[-1]["weight"] == "hidden.fc.weight"
    )
    # BatchNorm in front: each nonlinearity's input is unit gaussian per channel
    for row in layers[1:5]:
        assert row["pre_mean"] == pytest.approx(0.0, abs=1e-4)
        assert row["pre_std"] == pytest.approx(1.0, abs=1e-2)


def test_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab", "probe", "data.subset=32", "model.depth=1",
         "model.width=8", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "1 blocks.0.act" in proc.stdout
    assert (tmp_path / "probe.json").exists() and (tmp_path / "probe.png").exists()
