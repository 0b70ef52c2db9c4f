"""Every option of every config group composes, builds and trains a few steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from trainlab.cli import conf_dir
from trainlab.config import compose
from trainlab.errors import ConfigError
from trainlab.schema import GROUPS
from trainlab.train import train

CONF = Path(conf_dir())
TINY = [
    "data.subset=96",
    "trainer.epochs=1",
    "trainer.batch_size=32",
    "model.width=16",
    "model.depth=2",
    "trainer.progress=never",
    "stats.every=2",
    "stats.histogram_every=2",
]
# options that need files written by the test, or image data for a conv net
NEEDS_FILES = {"data": {"mnist", "cifar10", "cifar100"}}
IMAGE_DATA_FOR = {"model": {"cnn"}}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in options(g) if o not in NEEDS_FILES.get(g, ())]


def test_every_group_has_options():
    for group in GROUPS:
        assert len(options(group)) >= 2, group


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_trains(group, option, tmp_path):
    overrides = [*TINY, f"{group}={option}"]
    if group == "data" and option == "fashion_mnist" and not _fashion_available():
        pytest.skip("Fashion-MNIST files absent: apt-get install dataset-fashion-mnist")
    if group == "data" and option == "gaussian":
        overrides.append("data.features=32")
    cfg = compose(overrides)
    assert cfg[group].name == option
    summary = train(cfg, tmp_path)
    assert summary["status"] == "completed", summary
    assert summary["choices"][group] == option
    assert summary["steps"] == 3
    assert math.isfinite(summary["train_loss"])
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["status"] == "completed"
    assert (tmp_path / "checkpoint.pt").exists()
    assert list(tmp_path.glob("events.out.tfevents.*"))


def _fashion_available() -> bool:
    return Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists()


@pytest.mark.parametrize("option", sorted(NEEDS_FILES["data"]))
def test_torchvision_data_option_trains_from_files_in_the_real_format(option, tmp_path):
    from test_data import small_idx_set, write_cifar10, write_cifar100, write_idx_set

    root = tmp_path / "data"
    if option == "mnist":
        write_idx_set(root / "MNIST" / "raw", small_idx_set(n_train=60), gz=False)
    else:
        (write_cifar10 if option == "cifar10" else write_cifar100)(root, n=20)
    cfg = compose([*TINY, f"data={option}", f"data.root={root}", "data.subset=null"])
    summary = train(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["choices"]["data"] == option


def test_cnn_trains_with_every_norm_and_maxout(tmp_path):
    for norm in options("norm"):
        cfg = compose(
            [
                *TINY,
                "model=cnn",
                "model.width=4",
                "model.head_width=8",
                f"norm={norm}",
                "activation=maxout",
                "trainer.checkpoint=false",
            ]
        )
        assert train(cfg, tmp_path / norm)["status"] == "completed", norm


def test_same_seed_same_numbers_on_cpu(tmp_path):
    overrides = [*TINY, "regularizer=dropout", "augmentation=crop_flip", "device=cpu"]
    a = train(compose(overrides), tmp_path / "a")
    b = train(compose(overrides), tmp_path / "b")
    c = train(compose([*overrides, "seed=1"]), tmp_path / "c")
    keys = ("initial_loss", "train_loss", "val_loss", "test_acc")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert a["train_loss"] != c["train_loss"]


def test_summary_contract(tmp_path):
    summary = train(compose(TINY), tmp_path)
    for key in (
        "status",
        "seed",
        "choices",
        "initial_loss",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_acc",
        "best_val_acc",
        "steps",
        "epochs",
        "wall_time_s",
        "examples_per_s",
        "params",
    ):
        assert key in summary, key
    assert set(summary["choices"]) == set(GROUPS)
    # training steps and evaluation are parts of the run's wall time (bench_sweep.py)
    assert 0 < summary["train_time_s"] + summary["eval_time_s"] < summary["wall_time_s"]
    assert summary["eval_time_s"] > 0
    # ln(10) = 2.303 for 10 classes with kaiming init is not exact; it must be near it
    assert 1.5 < summary["initial_loss"] < 4.0
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["epochs"][-1]["step"] == summary["steps"]


def test_divergence_is_recorded_not_raised(tmp_path):
    cfg = compose(
        [*TINY, "optimizer=sgd", "optimizer.lr=1e30", "init=large_random", "trainer.epochs=5"]
    )
    summary = train(cfg, tmp_path)
    assert summary["status"] == "diverged"
    assert summary["diverged_at_step"] >= 1
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_max_steps_caps_training(tmp_path):
    summary = train(compose([*TINY, "trainer.epochs=5", "trainer.max_steps=4"]), tmp_path)
    assert summary["steps"] == 4 and summary["epochs"] == 2


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("regularizer.p=1.0", "regularizer.p"),
        ("regularizer.p=-0.1", "regularizer.p"),
        ("model.depth=0", "model.depth"),
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.lr=-1", "optimizer.lr"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("trainer.epochs=0", "trainer.epochs"),
        ("device=tpu", "device"),
        ("regularizer.weight_decay=-1", "regularizer.weight_decay"),
    ],
)
def test_bad_values_fail_before_training_naming_the_key(override, key, tmp_path):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        train(compose([*TINY, override]), tmp_path)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.glob("events.out.tfevents.*"))


def test_cnn_on_flat_data_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="model"):
        train(compose([*TINY, "model=cnn", "data=gaussian", "data.features=8"]), tmp_path)


def test_typed_schema_rejects_bad_types():
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose(["trainer.epochs=abc"])
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose(["model.depth=deep"])


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ConfigCompositionException) as err:
        compose(["activation=swishy"])
    assert "relu" in str(err.value) and "tanh" in str(err.value)


def test_weight_decay_spares_biases_and_norm_parameters():
    from trainlab.build import build_model, build_optimizer

    cfg = compose(["regularizer=l2", "norm=batch"])
    model = build_model(cfg, (1, 8, 8), 10)
    decay, no_decay = build_optimizer(cfg, model).param_groups
    assert decay["weight_decay"] == pytest.approx(5e-4) and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == sum(
        p.numel() for p in model.parameters()
    )


@pytest.mark.parametrize("option", options("scheduler"))
def test_scheduler_with_warmup_follows_torch(option):
    from trainlab.build import build_scheduler

    extra = ["scheduler.main.timescale=10"] if option == "inverse_sqrt" else []
    cfg = compose([f"scheduler={option}", "scheduler.warmup_steps=5", "optimizer=sgd", *extra])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = build_scheduler(cfg, opt, total_steps=50)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.001)  # warmup starts at 0.01 * lr
    assert lrs[1] > lrs[0]
    assert max(lrs) == pytest.approx(0.1)
    if option != "constant":
        assert lrs[-1] < 0.1
