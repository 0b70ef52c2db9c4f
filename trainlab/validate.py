"""Range, key and torch-argument checks before any training: one line naming the key, the value
and what is allowed. `validate(cfg)` needs no data; `validate_data` and `validate_steps` run once
the data set's shape and the run's length are known."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from trainlab import build, initializers, schema
from trainlab.errors import ConfigError

# typed nodes: a key their schema lacks came from a `+key=value` override and would do nothing
TYPED = {
    "trainer": schema.TrainerConf, "stats": schema.StatsConf, "data": schema.DataConf,
    "activation": schema.ActivationConf, "init": schema.InitConf, "norm": schema.NormConf,
    "regularizer": schema.RegularizerConf, "augmentation": schema.AugmentationConf,
    "preprocess": schema.PreprocessConf, "scheduler": schema.SchedulerConf,
    "transfer": schema.TransferConf, "gradcheck": schema.GradcheckConf,
}  # fmt: skip
MODELS = {"trainlab.models.MLP": schema.MLPConf, "trainlab.models.CNN": schema.CNNConf}
NON_NEGATIVE_OPTIMIZER_ARGS = (
    "momentum", "dampening", "eps", "alpha", "lr_decay", "initial_accumulator_value",
)  # fmt: skip


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate(cfg: DictConfig) -> None:
    _validate_keys(cfg)
    _validate_run(cfg)
    _validate_init(cfg)
    _validate_model(cfg)
    _validate_optimizer(cfg)
    _validate_scheduler(cfg)
    _validate_layers(cfg)


def _validate_keys(cfg: DictConfig) -> None:
    top = [f.name for f in dataclasses.fields(schema.Config)]
    for key in cfg:
        _check(
            key in top or key == "hydra",
            str(key),
            cfg[key],
            f"an unknown key; keys: {', '.join(top)}",
        )
    typed = {**TYPED, "model": MODELS.get(cfg.model.get("_target_"))}
    for node, conf in typed.items():
        if conf is None:
            continue
        known = [f.name for f in dataclasses.fields(conf)]
        for key in cfg[node]:
            _check(key in known, f"{node}.{key}", cfg[node][key],
                   f"an unknown key; {node} has {', '.join(known)}")  # fmt: skip


def _validate_run(cfg: DictConfig) -> None:
    t, r, d, st = cfg.trainer, cfg.regularizer, cfg.data, cfg.stats
    for key in ("epochs", "batch_size", "eval_batch_size"):
        _check(t[key] >= 1, f"trainer.{key}", t[key], "an integer >= 1")
    _check(t.max_steps is None or t.max_steps >= 1, "trainer.max_steps", t.max_steps,
           "null or an integer >= 1")  # fmt: skip
    _check(t.checkpoint_every >= 0, "trainer.checkpoint_every", t.checkpoint_every,
           "an integer >= 0 (0: at epoch ends only)")  # fmt: skip
    _check(t.progress in ("auto", "always", "never"), "trainer.progress", t.progress,
           "auto, always, never")  # fmt: skip
    _check(0 <= t.target_train_error < 1, "trainer.target_train_error", t.target_train_error,
           "a fraction in [0, 1)")  # fmt: skip
    _check(t.ema_decay is None or 0 < t.ema_decay < 1, "trainer.ema_decay", t.ema_decay,
           "null or a decay in (0, 1), e.g. 0.999")  # fmt: skip
    _check(t.swa_start is None or t.swa_start >= 1, "trainer.swa_start", t.swa_start,
           "null or an epoch >= 1")  # fmt: skip
    _check(t.ema_decay is None or t.swa_start is None, "trainer.swa_start", t.swa_start,
           "null when trainer.ema_decay is set (one average at a time)")  # fmt: skip
    tr = cfg.transfer
    _check(tr.trainable_blocks is None or tr.trainable_blocks >= 0, "transfer.trainable_blocks",
           tr.trainable_blocks, "null (all) or an integer >= 0 (0: the classifier only)")  # fmt: skip
    _check(_number(tr.pretrained_lr_scale) and tr.pretrained_lr_scale > 0,
           "transfer.pretrained_lr_scale", tr.pretrained_lr_scale, "a finite number > 0")  # fmt: skip
    _check(0 <= r.p < 1, "regularizer.p", r.p, "a dropout probability in [0, 1)")
    _check(_number(r.weight_decay) and r.weight_decay >= 0, "regularizer.weight_decay",
           r.weight_decay, "a finite number >= 0")  # fmt: skip
    _check(_number(r.l1) and r.l1 >= 0, "regularizer.l1", r.l1, "a finite number >= 0")
    _check(0 < d.val_fraction < 1, "data.val_fraction", d.val_fraction,
           "a fraction in (0, 1): training reports validation metrics")  # fmt: skip
    _check(0 < d.test_fraction < 1, "data.test_fraction", d.test_fraction, "a fraction in (0, 1)")
    _check(d.subset is None or d.subset >= 1, "data.subset", d.subset, "null (all) or >= 1")
    _check(bool(re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(cfg.device))), "device", cfg.device,
           "auto, cpu, cuda, cuda:N")  # fmt: skip
    _check(cfg.threads is None or cfg.threads >= 1, "threads", cfg.threads, "null or >= 1")
    for key in ("every", "histogram_every", "max_batch"):
        _check(st[key] >= 1, f"stats.{key}", st[key], "an integer >= 1")


def _validate_init(cfg: DictConfig) -> None:
    _check(cfg.init.gain in (None, "activation"), "init.gain", cfg.init.gain,
           "null (the scheme's own scale) or activation (scaled by the activation's gain)")  # fmt: skip
    _check(cfg.init.gain is None or cfg.init.gain_arg in ("gain", "nonlinearity"), "init.gain",
           cfg.init.gain, f"null: init={cfg.init.name} takes no gain")  # fmt: skip


def _validate_model(cfg: DictConfig) -> None:
    m = cfg.model
    for key in ("depth", "width"):
        _check(m[key] >= 1, f"model.{key}", m[key], "an integer >= 1")
    if "stages" in m:
        _check(m.stages >= 1, "model.stages", m.stages, "an integer >= 1")
        _check(m.head_width >= 0, "model.head_width", m.head_width, "an integer >= 0 (0: linear)")


@contextmanager
def torch_arguments(key: str, node: Any) -> Iterator[None]:
    """torch's own argument errors (an invalid value, an unknown keyword) as one line."""
    try:
        yield
    except ConfigError:
        raise
    except (TypeError, ValueError, IndexError, RuntimeError, InstantiationException) as err:
        args = OmegaConf.to_container(node) if isinstance(node, DictConfig) else node
        if isinstance(args, dict):
            args = {k: v for k, v in args.items() if k not in ("_target_", "_partial_", "name")}
        message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{key}={args}: rejected by torch: {message}") from err


def _validate_optimizer(cfg: DictConfig) -> None:
    opt = cfg.optimizer
    lr = opt.get("lr")
    _check(_number(lr) and lr > 0, "optimizer.lr", lr, "a finite number > 0")
    betas = opt.get("betas")
    if betas is not None:
        ok = len(betas) == 2 and all(_number(b) and 0 <= b < 1 for b in betas)
        _check(ok, "optimizer.betas", list(betas), "two numbers in [0, 1), e.g. [0.9,0.999]")
    for key in NON_NEGATIVE_OPTIMIZER_ARGS:
        if key in opt:
            _check(_number(opt[key]) and opt[key] >= 0, f"optimizer.{key}", opt[key],
                   "a finite number >= 0")  # fmt: skip
    with torch_arguments("optimizer", opt):
        build.build_optimizer(cfg, torch.nn.Linear(1, 1))


def _validate_scheduler(cfg: DictConfig) -> None:
    s, main = cfg.scheduler, cfg.scheduler.main
    _check(s.warmup_steps >= 0, "scheduler.warmup_steps", s.warmup_steps, "an integer >= 0")
    _check(_number(s.warmup_start_factor) and 0 < s.warmup_start_factor <= 1,
           "scheduler.warmup_start_factor", s.warmup_start_factor, "a factor in (0, 1]")  # fmt: skip
    ranges = {  # key: (ok, allowed)
        "every": (lambda v: 0 < v <= 1, "a fraction of the run's steps in (0, 1]"),
        "gamma": (lambda v: v > 0, "a factor > 0 (the lr is multiplied by it)"),
        "eta_min": (lambda v: v >= 0, "a learning rate >= 0"),
        "end_factor": (lambda v: 0 <= v <= 1, "a factor in [0, 1]"),
        "timescale": (lambda v: v >= 1, "a number of steps >= 1"),
    }
    for key, (ok, allowed) in ranges.items():
        if key in main:
            _check(
                _number(main[key]) and ok(main[key]), f"scheduler.main.{key}", main[key], allowed
            )
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    with torch_arguments("scheduler.main", main):
        build.build_scheduler(cfg, optimizer, total_steps=s.warmup_steps + 10)


def _validate_layers(cfg: DictConfig) -> None:
    """Build each factory once on a tiny input: unknown or invalid arguments fail here."""
    with torch_arguments("activation.layer", cfg.activation.layer):
        build.build_act_layer(cfg)()
    layout = get_class(cfg.model._target_).layout
    with torch_arguments(f"norm.{layout}", cfg.norm[layout]):
        build.build_norm_layer(cfg)(cfg.model.width)
    if cfg.init.weight is not None:
        with torch_arguments("init.weight", cfg.init.weight):
            scheme = instantiate(cfg.init.weight)
            act = cfg.activation
            initializers.with_gain(scheme, cfg.init.gain, cfg.init.gain_arg, act.nonlinearity,
                                   act.param)(torch.empty(4, 4))  # fmt: skip
    with torch_arguments("preprocess", cfg.preprocess):
        build.build_preprocess(cfg)
    with torch_arguments("augmentation.ops", cfg.augmentation.ops):
        build.build_augment(cfg)(torch.rand(2, 3, 16, 16), torch.Generator().manual_seed(0))


def validate_data(cfg: DictConfig, in_shape: tuple[int, ...], n_train: int | None = None) -> None:
    """Checks that need the data: conv nets and augmentation need images; batch norm on flat
    features needs two examples in every training batch (the last of an epoch included)."""
    image = len(in_shape) == 3
    layout = get_class(cfg.model._target_).layout
    if cfg.norm.name == "batch" and layout == "flat" and n_train is not None:
        b = cfg.trainer.batch_size
        _check(b >= 2 and n_train % b != 1, "trainer.batch_size", b,
               f"norm=batch needs >= 2 examples in every training batch; with {n_train} training "
               "examples pick a batch size >= 2 that does not leave a last batch of 1")  # fmt: skip
    if layout == "spatial":
        _check(image, "model", cfg.model.name,
               f"data={cfg.data.name} has flat examples {tuple(in_shape)}; use model=mlp")  # fmt: skip
    if cfg.augmentation.ops:
        _check(image, "augmentation", cfg.augmentation.name,
               f"data={cfg.data.name} has flat examples {tuple(in_shape)}; use augmentation=none")  # fmt: skip


def validate_steps(cfg: DictConfig, total_steps: int) -> None:
    """Checks that need the run's length."""
    w = cfg.scheduler.warmup_steps
    _check(w < total_steps, "scheduler.warmup_steps", w,
           f"fewer than the run's {total_steps} steps")  # fmt: skip
