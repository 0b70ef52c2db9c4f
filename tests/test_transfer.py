"""Transfer learning: class subsets, loading a checkpoint, frozen layers that really do not
change (BN in eval mode), the cached source model, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainlab.config import compose
from trainlab.data import load_data
from trainlab.errors import ConfigError
from trainlab.train import prepare, train
from trainlab.transfer import feature_blocks

TINY = ["data.subset=96", "trainer.batch_size=32", "trainer.epochs=2", "model.depth=2",
        "model.width=16", "trainer.progress=never", "stats.every=2"]  # fmt: skip
SOURCE = ["data.classes=[0,1,2,3,4]"]
TARGET = ["data.classes=[5,6,7,8,9]"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A trained source model (batch norm, so that frozen running statistics can be checked)."""
    run_dir = tmp_path_factory.mktemp("source")
    summary = train(compose([*TINY, *SOURCE, "norm=batch"]), run_dir)
    assert summary["status"] == "completed"
    return run_dir / "checkpoint.pt"


def test_classes_are_a_relabelled_subset():
    full = load_data(compose([]).data)
    part = load_data(compose(["data.classes=[7,2]"]).data)
    assert part.num_classes == 2
    for split in ("train", "val", "test"):
        y = getattr(part, f"{split}_y")
        assert set(y.tolist()) == {0, 1}
    # class 7 became 0, class 2 became 1: the same images as in the full set
    n7 = (
        int((full.test_y == 7).sum())
        + int((full.train_y == 7).sum())
        + int((full.val_y == 7).sum())
    )
    n0 = sum(int((getattr(part, f"{s}_y") == 0).sum()) for s in ("train", "val", "test"))
    assert n0 == n7


@pytest.mark.parametrize("classes", ["[0,0,1]", "[3]", "[0,10]"])
def test_bad_classes_are_one_line(classes):
    with pytest.raises(ConfigError, match="data.classes"):
        load_data(compose([f"data.classes={classes}"]).data)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    ("option", "frozen"),
    [("linear_probe", ["blocks.0", "blocks.1"]), ("finetune_top", ["blocks.0"]),
     ("finetune_all", []), ("scratch", [])],
)  # fmt: skip
def test_frozen_layers_do_not_change(source, tmp_path, option, frozen):
    overrides = [*TINY, *TARGET, "norm=batch", f"model.pretrained={source}", f"transfer={option}"]
    cfg = compose(overrides)
    _, _, _, model = prepare(cfg)
    before = _state(model)
    pretrained = torch.load(source, weights_only=True)["model"]
    loaded = option != "scratch"
    assert torch.equal(before["blocks.0.fc.weight"], pretrained["blocks.0.fc.weight"]) == loaded
    summary = train(cfg, tmp_path)
    assert summary["status"] == "completed"
    after = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    for key, value in before.items():
        block = key.rsplit(".", 2)[0]
        same = torch.equal(after[key], value)
        if block in frozen:  # weights and BN running statistics untouched
            assert same, key
        elif key.endswith(("weight", "bias")):
            assert not same, key
    assert summary["transfer"]["frozen"] == frozen


def test_frozen_batch_norm_stays_in_eval_mode(source):
    cfg = compose([*TINY, *TARGET, "norm=batch", f"model.pretrained={source}",
                   "transfer=linear_probe"])  # fmt: skip
    _, data, preprocess, model = prepare(cfg)
    model.train()
    model(preprocess(data.train_x[:8]))
    assert not model.blocks[0].norm.training and model.head.training


def test_pretrained_lr_scale(source):
    from trainlab.build import build_optimizer

    cfg = compose([*TINY, *TARGET, "norm=batch", f"model.pretrained={source}",
                   "transfer.pretrained_lr_scale=0.1", "optimizer.lr=0.01"])  # fmt: skip
    _, _, _, model = prepare(cfg)
    lrs = {id(p): g["lr"] for g in build_optimizer(cfg, model).param_groups for p in g["params"]}
    assert lrs[id(model.head.weight)] == pytest.approx(0.01)
    assert lrs[id(model.blocks[0].fc.weight)] == pytest.approx(0.001)


def test_mismatched_architecture_is_one_line(source):
    cfg = compose([*TINY, *TARGET, "model.width=32", f"model.pretrained={source}"])
    with pytest.raises(ConfigError, match="not the same architecture"):
        prepare(cfg)
    with pytest.raises(ConfigError, match="no such file"):
        prepare(compose([*TINY, "model.pretrained=/nonexistent/checkpoint.pt"]))


def test_source_is_trained_once_and_cached(tmp_path):
    common = [*TINY, *TARGET, "transfer=linear_probe", f"transfer.cache_dir={tmp_path / 'cache'}",
              "transfer.source=['data.classes=[0,1,2,3,4]','trainer.epochs=1']"]  # fmt: skip
    first = train(compose([*common, "seed=0"]), tmp_path / "a")
    (cached,) = (tmp_path / "cache").iterdir()
    stamp = (cached / "checkpoint.pt").stat().st_mtime_ns
    second = train(compose([*common, "seed=1"]), tmp_path / "b")
    assert first["status"] == second["status"] == "completed"
    assert (cached / "checkpoint.pt").stat().st_mtime_ns == stamp  # reused, not retrained
    assert first["transfer"]["pretrained"] == second["transfer"]["pretrained"]


def test_feature_blocks_of_the_cnn():
    cfg = compose(["model=cnn", "model.width=4", "model.head_width=8"])
    _, _, _, model = prepare(cfg)
    names = [n for n, _ in feature_blocks(model)]
    assert names == ["blocks.0", "blocks.1", "blocks.3", "blocks.4", "hidden"]
