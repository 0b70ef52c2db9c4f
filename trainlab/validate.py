"""Cross-field and range checks, before any training: one line naming the key, value, allowed."""

from __future__ import annotations

import re
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig

from trainlab.errors import ConfigError


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def validate(cfg: DictConfig) -> None:
    t, r = cfg.trainer, cfg.regularizer
    _check(t.epochs >= 1, "trainer.epochs", t.epochs, "an integer >= 1")
    _check(t.batch_size >= 1, "trainer.batch_size", t.batch_size, "an integer >= 1")
    _check(t.eval_batch_size >= 1, "trainer.eval_batch_size", t.eval_batch_size, "an integer >= 1")
    _check(
        t.max_steps is None or t.max_steps >= 1,
        "trainer.max_steps",
        t.max_steps,
        "null or an integer >= 1",
    )
    _check(
        t.checkpoint_every >= 0,
        "trainer.checkpoint_every",
        t.checkpoint_every,
        "an integer >= 0 (0: at epoch ends only)",
    )
    _check(
        t.progress in ("auto", "always", "never"),
        "trainer.progress",
        t.progress,
        "auto, always, never",
    )
    _check(
        0 <= t.target_train_error < 1,
        "trainer.target_train_error",
        t.target_train_error,
        "a fraction in [0, 1)",
    )
    _check(
        t.ema_decay is None or 0 < t.ema_decay < 1,
        "trainer.ema_decay",
        t.ema_decay,
        "null or a decay in (0, 1), e.g. 0.999",
    )
    _check(
        t.swa_start is None or t.swa_start >= 1,
        "trainer.swa_start",
        t.swa_start,
        "null or an epoch >= 1",
    )
    _check(
        t.ema_decay is None or t.swa_start is None,
        "trainer.swa_start",
        t.swa_start,
        "null when trainer.ema_decay is set (one average at a time)",
    )
    _check(0 <= r.p < 1, "regularizer.p", r.p, "a dropout probability in [0, 1)")
    _check(r.weight_decay >= 0, "regularizer.weight_decay", r.weight_decay, ">= 0")
    _check(r.l1 >= 0, "regularizer.l1", r.l1, ">= 0")
    lr = cfg.optimizer.get("lr")
    _check(isinstance(lr, (int, float)) and lr > 0, "optimizer.lr", lr, "a number > 0")
    _check(
        bool(re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(cfg.device))),
        "device",
        cfg.device,
        "auto, cpu, cuda, cuda:N",
    )
    _check(cfg.threads is None or cfg.threads >= 1, "threads", cfg.threads, "null or >= 1")
    _check(
        cfg.scheduler.warmup_steps >= 0,
        "scheduler.warmup_steps",
        cfg.scheduler.warmup_steps,
        "an integer >= 0",
    )
    _check(cfg.stats.every >= 1, "stats.every", cfg.stats.every, "an integer >= 1")
    _check(
        cfg.stats.histogram_every >= 1,
        "stats.histogram_every",
        cfg.stats.histogram_every,
        "an integer >= 1",
    )
    _check(
        cfg.init.gain in (None, "activation"),
        "init.gain",
        cfg.init.gain,
        "null (the scheme's own scale) or activation (scaled by the activation's gain)",
    )
    _check(
        cfg.init.gain is None or cfg.init.gain_arg in ("gain", "nonlinearity"),
        "init.gain",
        cfg.init.gain,
        f"null: init={cfg.init.name} takes no gain",
    )
    _validate_model(cfg)


def _validate_model(cfg: DictConfig) -> None:
    m = cfg.model
    for key in ("depth", "width"):
        _check(m[key] >= 1, f"model.{key}", m[key], "an integer >= 1")
    if "stages" in m:
        _check(m.stages >= 1, "model.stages", m.stages, "an integer >= 1")
        _check(m.head_width >= 0, "model.head_width", m.head_width, "an integer >= 0 (0: linear)")


def validate_data(cfg: DictConfig, in_shape: tuple[int, ...]) -> None:
    """Checks that need the data's shape: conv nets and augmentation need images."""
    image = len(in_shape) == 3
    if get_class(cfg.model._target_).layout == "spatial":
        _check(
            image,
            "model",
            cfg.model.name,
            f"data={cfg.data.name} has flat examples {tuple(in_shape)}; use model=mlp",
        )
    if cfg.augmentation.ops:
        _check(
            image,
            "augmentation",
            cfg.augmentation.name,
            f"data={cfg.data.name} has flat examples {tuple(in_shape)}; use augmentation=none",
        )
