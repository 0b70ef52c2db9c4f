"""Polyak averaging: the EMA is torch's formula, BN statistics follow the averaged weights,
both weights are evaluated and logged, and nothing is built when it is off."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from trainlab.averaging import Averaged, build_averaged
from trainlab.config import compose
from trainlab.errors import ConfigError
from trainlab.train import train
from trainlab.validate import validate

TINY = ["data.subset=128", "trainer.batch_size=32", "trainer.epochs=2", "model.depth=2",
        "model.width=16", "trainer.progress=never", "stats.enabled=false"]  # fmt: skip


def test_off_builds_nothing_and_writes_no_averaged_keys(tmp_path):
    cfg = compose(TINY)
    assert build_averaged(cfg, nn.Linear(2, 2)) is None
    summary = train(cfg, tmp_path)
    assert not [k for k in summary if k.endswith(("_ema", "_swa"))]


def test_ema_averages_weights_and_batch_norm_buffers():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    avg = Averaged(model, decay=0.9, start_epoch=1)
    weights = mean = None
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(8, 3))  # training mode: moves the running statistics
        avg.update(model, epoch=1)  # the first update copies, later ones are the EMA
        w, m = model[0].weight.detach().clone(), model[1].running_mean.clone()
        weights = w if weights is None else 0.9 * weights + 0.1 * w
        mean = m if mean is None else 0.9 * mean + 0.1 * m
    assert torch.allclose(avg.model.module[0].weight, weights)
    assert torch.allclose(avg.model.module[1].running_mean, mean)
    assert int(avg.model.n_averaged) == 3


def test_ema_matches_a_hand_computed_average():
    model = nn.Linear(2, 1, bias=False)
    avg = Averaged(model, decay=0.5, start_epoch=1)
    want = None
    for value in (1.0, 3.0, 5.0):
        with torch.no_grad():
            model.weight.fill_(value)
        avg.update(model, epoch=1)
        want = value if want is None else 0.5 * want + 0.5 * value
    assert torch.allclose(avg.model.module.weight, torch.full((1, 2), want))  # 1 -> 2 -> 3.5


def test_swa_starts_at_its_epoch_and_averages_equally():
    model = nn.Linear(2, 1, bias=False)
    avg = Averaged(model, decay=None, start_epoch=2)
    for epoch, value in ((1, 100.0), (2, 1.0), (2, 2.0), (3, 6.0)):
        with torch.no_grad():
            model.weight.fill_(value)
        avg.update(model, epoch)
    assert torch.allclose(avg.model.module.weight, torch.full((1, 2), 3.0))  # (1 + 2 + 6) / 3


@pytest.mark.parametrize("option", ["trainer.ema_decay=0.9", "trainer.swa_start=2"])
def test_both_weights_evaluated_each_epoch_and_logged(tmp_path, option):
    summary = train(compose([*TINY, "norm=batch", option]), tmp_path)
    suffix = "ema" if "ema" in option else "swa"
    for key in ("val_acc", "val_loss", "test_acc", "test_loss", "train_loss", "best_val_acc"):
        assert 0 <= summary[f"{key}_{suffix}"] < 10, key
    epochs = json.loads((tmp_path / "history.json").read_text())["epochs"]
    assert all(f"val_acc_{suffix}" in e for e in epochs[1:])
    tags = EventAccumulator(str(tmp_path)).Reload().Tags()["scalars"]
    assert {f"val/acc_{suffix}", f"val/loss_{suffix}", f"test/acc_{suffix}"} <= set(tags)


def test_swa_recomputes_batch_norm_statistics_for_the_averaged_weights(tmp_path):
    from trainlab.train import prepare

    cfg = compose([*TINY, "norm=batch", "trainer.swa_start=1"])
    _, data, preprocess, model = prepare(cfg)
    avg = build_averaged(cfg, model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    avg.update(model, epoch=1)
    avg.evaluate(preprocess, data, ("val",), 1024)
    net = avg.model.module
    first = net.blocks[0].fc(net.flatten(preprocess(data.train_x)))  # (N, width)
    assert torch.allclose(net.blocks[0].norm.running_mean, first.mean(0), atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["trainer.ema_decay=1.5"], "trainer.ema_decay"),
        (["trainer.swa_start=0"], "trainer.swa_start"),
        (["trainer.ema_decay=0.9", "trainer.swa_start=2"], "trainer.swa_start"),
    ],
)
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        validate(compose(overrides))
