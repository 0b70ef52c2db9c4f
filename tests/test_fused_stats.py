"""Fused members with per-layer statistics, dropout and per-member norms train as their
separate runs do (issue 11), on real digits: the same statistics, tags, masks and weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainlab.config import compose
from trainlab.fused import train_fused
from trainlab.train import train

QUIET = ["trainer.progress=never", "threads=1", "data.subset=256", "model.width=32"]
STATS = ["stats.every=2", "stats.histogram_every=4", "stats.pre_activation=true"]


def run_both(tmp_path, seeds, *overrides):
    cfgs = [compose([*QUIET, *overrides, f"seed={s}"]) for s in seeds]
    fused = train_fused(cfgs, [tmp_path / "fused" / str(c.seed) for c in cfgs])
    separate = [train(c, tmp_path / "separate" / str(c.seed)) for c in cfgs]
    return fused, separate


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0}).Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def close(a, b, tol=1e-4) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == pytest.approx(b, rel=tol, abs=tol)


SLOW = pytest.mark.slow  # the cases the fast suite does without (CI's second pass runs them)


@pytest.mark.parametrize(
    "extra",
    [
        [],
        pytest.param(["activation=tanh", "norm=batch"], marks=SLOW),
        ["model=cnn", "model.width=4"],
    ],
)
def test_each_members_statistics_equal_its_separate_runs(extra, tmp_path):
    fused, separate = run_both(tmp_path, [0, 1], "trainer.max_steps=5", *STATS, *extra)
    for f, s in zip(fused, separate, strict=True):
        assert f["status"] == s["status"] == "completed"
        assert f["metrics"].keys() == s["metrics"].keys()
        for key, value in s["metrics"].items():  # step-0 activation std/mean, grad norms ...
            assert close(f["metrics"][key], value), key
        assert f["diagnostics"] == s["diagnostics"]
    for seed in (0, 1):
        f, s = (scalars(tmp_path / k / str(seed)) for k in ("fused", "separate"))
        stat_tags = {t for t in s if "/" in t and t.split("/")[0] not in ("train", "val", "test")}
        assert stat_tags and stat_tags <= f.keys()
        stat_tags -= {"examples/s"}
        for tag in sorted(stat_tags):
            assert [st for st, _ in f[tag]] == [st for st, _ in s[tag]], tag  # steps 0, 2, 4
            assert close([v for _, v in f[tag]], [v for _, v in s[tag]], 1e-3), tag


def test_members_differing_in_activation_lr_and_init_have_their_separate_runs_statistics(
    tmp_path,
):
    own = [["activation=sigmoid", "init=xavier_normal", "optimizer.lr=0.1"],
           ["activation=tanh", "optimizer.lr=0.01"], ["activation=relu", "seed=3"]]  # fmt: skip
    cfgs = [compose([*QUIET, "trainer.max_steps=5", *STATS, *o]) for o in own]
    fused = train_fused(cfgs, [tmp_path / "fused" / str(i) for i in range(3)])
    for i, (cfg, f) in enumerate(zip(cfgs, fused, strict=True)):
        s = train(cfg, tmp_path / "separate" / str(i))
        for key, value in s["metrics"].items():  # step-0 activation std/mean, grad norms ...
            assert close(f["metrics"][key], value), (i, key)
        assert f["diagnostics"] == s["diagnostics"]
        f_tags, s_tags = (scalars(tmp_path / k / str(i)) for k in ("fused", "separate"))
        for tag in [t for t in s_tags if t.startswith(("act_std/", "update_ratio/"))]:
            assert close([v for _, v in f_tags[tag]], [v for _, v in s_tags[tag]], 1e-3), tag


def test_dropout_and_bernoulli_draw_the_same_mask_from_the_same_state():
    gen, x = torch.Generator().manual_seed(3), torch.randn(64, 32)
    torch.manual_seed(3)
    expected = F.dropout(x, 0.3, training=True)
    noise = torch.empty_like(x).bernoulli_(0.7, generator=gen)
    assert torch.equal(x * noise.div_(0.7), expected)


CNN = ["model=cnn", "model.width=4", "model.head_width=16"]


@pytest.mark.parametrize(
    "extra",
    [
        ["regularizer=dropout"],
        pytest.param(["regularizer=l2", "scheduler=cosine"], marks=SLOW),
        ["activation=prelu", "norm=layer"],
        pytest.param(["norm=group", "activation=gelu"], marks=SLOW),
        pytest.param([*CNN, "regularizer=dropout"], marks=SLOW),
        # a conv bias in front of batch/instance norm has a gradient of exactly 0 up to
        # rounding, which Adam scales up to a step of ~lr: SGD keeps the rounding as small
        [*CNN, "norm=batch", "optimizer=sgd", "optimizer.lr=0.1"],
        pytest.param(
            [*CNN, "norm=instance", "activation=maxout", "optimizer=sgd", "optimizer.lr=0.1"],
            marks=SLOW,
        ),
    ],
)
def test_members_weights_after_steps_equal_the_separate_runs(extra, tmp_path):
    fused, separate = run_both(tmp_path, [2, 3], "trainer.max_steps=12", *extra)
    for f, s in zip(fused, separate, strict=True):
        assert f["status"] == s["status"] == "completed"
        assert f["initial_loss"] == pytest.approx(s["initial_loss"], abs=1e-5)
    for seed in (2, 3):
        f, s = (torch.load(tmp_path / k / str(seed) / "checkpoint.pt", weights_only=True)["model"]
                for k in ("fused", "separate"))  # fmt: skip
        assert f.keys() == s.keys()
        for name in f:
            torch.testing.assert_close(f[name], s[name], atol=1e-5, rtol=1e-4)
