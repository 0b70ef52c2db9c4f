"""TensorBoard tags read back from the event files of a real tiny training run."""

from __future__ import annotations

import json
import re
import struct
import threading

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.custom_scalar import layout_pb2

from trainlab import event_records, tb
from trainlab.config import compose
from trainlab.diagnostics import SCALAR_METRICS
from trainlab.train import train

TINY = ["data.subset=128", "trainer.batch_size=32", "trainer.epochs=3", "trainer.max_steps=11",
        "model.depth=2", "model.width=16", "trainer.progress=never", "trainer.checkpoint=false",
        "stats.every=5", "stats.histogram_every=10"]  # fmt: skip
ACTS = ["blocks.0.act", "blocks.1.act"]
WEIGHTS = ["blocks.0.fc.weight", "blocks.1.fc.weight", "head.weight"]
ACT_STATS = ["mean", "std", "saturated", "zeros", "dead", "nonfinite"]


def events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0,
                                                        "tensors": 0})  # fmt: skip
    return acc.Reload()


@pytest.fixture(scope="module", params=[False, True], ids=["post", "pre+post"])
def run(request, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    summary = train(compose([*TINY, f"stats.pre_activation={request.param}"]), run_dir)
    assert summary["status"] == "completed"
    return request.param, run_dir, summary


def test_scalar_tags_one_chart_per_statistic(run):
    pre, run_dir, _ = run
    scalars = set(events(run_dir).Tags()["scalars"])
    expected = {f"act_{s}/{a}" for s in ACT_STATS for a in ACTS}
    expected |= {"act_mean/input", "act_std/input", "act_nonfinite/input"}
    expected |= {f"{s}/{w}" for s in ("weight_std", "grad_norm", "update_ratio") for w in WEIGHTS}
    if pre:
        expected |= {f"pre_{s}/{a}" for s in ("mean", "std", "nonfinite") for a in ACTS}
    assert expected <= scalars
    assert any(tag.startswith("pre_") for tag in scalars) == pre
    assert {"train/loss", "val/acc"} <= scalars  # the loop's own tags are untouched


def test_captured_at_step_zero_then_every(run):
    _, run_dir, _ = run
    acc = events(run_dir)
    for tag in (
        "act_std/blocks.0.act",
        "act_dead/blocks.1.act",
        "grad_norm/head.weight",
        "update_ratio/blocks.0.fc.weight",
        "act_std/input",
    ):
        assert [e.step for e in acc.Scalars(tag)] == [0, 5, 10], tag
    assert [e.step for e in acc.Histograms("act_hist/blocks.0.act")] == [0, 10]
    assert {f"act_hist/{a}" for a in ["input", *ACTS]} <= set(acc.Tags()["histograms"])
    hist = acc.Histograms("act_hist/blocks.1.act")[0].histogram_value
    assert hist.num == 32 * 16  # one batch of 32 examples x 16 units, all finite
    assert sum(hist.bucket) == hist.num and hist.min >= 0  # relu


def test_custom_scalars_layout(run):
    """One chart per statistic, its tags by a regex: the same layout for every model."""
    pre, run_dir, _ = run
    acc = events(run_dir)
    (event,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts["act_std"] == ["^act_std/"] and charts["update_ratio"] == ["^update_ratio/"]
    assert ("pre_std" in charts) == pre
    scalars = acc.Tags()["scalars"]
    drawn = {t for t in scalars if any(re.match(r, t) for rs in charts.values() for r in rs)}
    assert {"act_std/input", *(f"act_dead/{a}" for a in ACTS)} <= drawn
    assert {f"update_ratio/{w}" for w in WEIGHTS} <= drawn
    assert not drawn & {"train/loss", "val/acc"}


def test_summary_metrics_and_diagnostics(run):
    _, run_dir, summary = run
    saved = json.loads((run_dir / "summary.json").read_text())
    metrics = saved["metrics"]
    for key in SCALAR_METRICS:
        assert isinstance(metrics[key], float), key
    assert len(metrics["act_std_step0"]) == len(ACTS)
    assert isinstance(saved["diagnostics"], list)
    assert summary["metrics"]["dead_fraction_max"] == metrics["dead_fraction_max"]


def test_stats_disabled_writes_none(tmp_path):
    train(compose([*TINY, "stats.enabled=false"]), tmp_path)
    tags = events(tmp_path).Tags()
    assert not [t for t in tags["scalars"] if t.startswith(("act_", "grad_norm/"))]
    assert not tags["histograms"]
    assert "dead_fraction_max" not in json.loads((tmp_path / "summary.json").read_text())["metrics"]


def test_huge_learning_rate_kills_relu_units(tmp_path):
    overrides = [*TINY, "optimizer.lr=0.5", "trainer.max_steps=21", "stats.every=10"]
    summary = train(compose(overrides), tmp_path)
    dead = [line for line in summary.get("diagnostics", []) if "dead units" in line]
    assert dead, summary.get("diagnostics")
    assert "leaky_relu" in dead[0] and summary["metrics"]["dead_fraction_max"] >= 0.5


def test_hparam_keys_of_a_sweep_from_its_overrides():
    """What every job of a sweep declares, from the sweep's overrides (command line and
    hydra.sweeper.params alike): types, domains, which keys vary; never the seed."""
    from trainlab.hparams import _info, _parse

    overrides = ["init.weight.std=0.05,0.5", "model=mlp,cnn", "trainer.max_steps=null,100",
                 "optimizer.lr=tag(log, interval(1e-4, 1e-1))", "seed=0,1", "trainer.epochs=2",
                 "stats.enabled=true,false"]  # fmt: skip
    keys = {k.name: k for k in _parse(overrides, {"seed"})}
    assert set(keys) == {"init.weight.std", "model", "trainer.max_steps", "optimizer.lr",
                         "trainer.epochs", "stats.enabled"}  # fmt: skip
    kinds = {name: (k.kind, k.differs) for name, k in keys.items()}
    assert kinds == {
        "init.weight.std": ("number", True), "model": ("string", True),
        "trainer.max_steps": ("string", True), "optimizer.lr": ("number", True),
        "trainer.epochs": ("number", False), "stats.enabled": ("bool", True),
    }  # fmt: skip
    assert list(_info(keys["init.weight.std"]).domain_discrete) == [0.05, 0.5]
    assert list(_info(keys["trainer.max_steps"]).domain_discrete) == ["100", "null"]
    lr = _info(keys["optimizer.lr"]).domain_interval
    assert (lr.min_value, lr.max_value) == (1e-4, 1e-1)


def test_a_runs_events_are_written_in_its_own_thread(tmp_path):
    """No writer thread (it would take the GIL from training at every event); the events are
    in the file once flushed, several scalars in one event."""
    before = threading.active_count()
    writer = tb.RunWriter(tmp_path, [])
    writer.add_scalar("a", 1.0, 1)
    tb.add_scalars(writer, [("b", 2.0), ("c", 3.0)], 2)
    assert threading.active_count() == before
    writer.flush()
    (path,) = tmp_path.glob(tb.EVENTS_GLOB)
    got = [(e.step, v.tag, v.simple_value) for e in tb.read_events(path.read_bytes())
           for v in e.summary.value]  # fmt: skip
    assert got == [(1, "a", 1.0), (2, "b", 2.0), (2, "c", 3.0)]
    writer.close()
    assert sorted(events(tmp_path).Tags()["scalars"]) == ["a", "b", "c"]  # checksums verified
    for data in (b"", b"abc", bytes(range(256)) * 5):  # tensorboard's own checksum
        assert event_records.masked_crc32c(data) == struct.pack("<I", masked_crc32c(data))
