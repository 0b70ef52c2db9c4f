"""Setting a run up: device, seeds, data, model and the objects that train it; a fresh start
or a resume from a checkpoint (trainlab.train calls these, top to bottom)."""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from trainlab import (
    averaging,
    build,
    checkpoint,
    diagnostics,
    stats,
    target,
    tb,
    terminal,
    transfer,
)
from trainlab.checkpoint import Run
from trainlab.data import Splits, load_data
from trainlab.errors import ConfigError
from trainlab.validate import validate_data, validate_steps

log = logging.getLogger("trainlab")
LEFTOVERS = ("checkpoint.pt", "history.json")  # of an earlier attempt that cannot be resumed


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda': no CUDA device is available here; allowed: auto, cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds every CUDA device


@torch.no_grad()
def evaluate(
    model: nn.Module,
    preprocess: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    probs: list[torch.Tensor] | None = None,
) -> tuple[float, float]:
    """(mean loss, accuracy) in eval mode; (nan, nan) for an empty split. `probs`, if given,
    receives each batch's softmax probabilities from the same forward pass (what
    trainlab.ensembles saves): a run's last evaluations also give its predictions."""
    if len(x) == 0:
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, len(x), batch_size):
        logits = model(preprocess(x[i : i + batch_size]))
        loss_sum += F.cross_entropy(logits, y[i : i + batch_size], reduction="sum")
        correct += (logits.argmax(1) == y[i : i + batch_size]).sum()
        if probs is not None:
            probs.append(logits.float().softmax(1))
    model.train(was_training)
    return loss_sum.item() / len(x), correct.item() / len(x)  # one sync per split


def prepare(cfg: DictConfig, fitted: dict | None = None
            ) -> tuple[torch.device, Splits, nn.Module, nn.Module]:  # fmt: skip
    """Device, data on it, preprocessing fitted on the train split, the initialised model.
    `fitted` (a fused group's members, trainlab.fused): each preprocessing config fitted once
    on the data and kept there; a member gets its own copy (fitting draws no random numbers,
    so its init is drawn as before)."""
    device = resolve_device(cfg.device)
    pretrained = transfer.pretrained_path(cfg)  # may train the cached source model: before seeding
    seed_everything(cfg.seed)
    data = load_data(cfg.data).to(device)
    validate_data(cfg, data.in_shape, len(data.train_x))
    preprocess = _fitted(cfg, device, data, fitted)
    model = build.build_model(cfg, data.in_shape, data.num_classes).to(device)
    transfer.apply(cfg, model, preprocess, pretrained)
    if model.layout == "spatial":
        model = model.to(memory_format=torch.channels_last)  # ~1.7x faster convs on CPU (oneDNN)
    return device, data, preprocess, model


def _fitted(cfg: DictConfig, device: torch.device, data: Splits, memo: dict | None) -> nn.Module:
    if memo is None:
        return build.build_preprocess(cfg).to(device).fit(data.train_x)
    key = (OmegaConf.to_yaml(cfg.preprocess, resolve=True), id(data.train_x))
    if key not in memo:
        memo[key] = build.build_preprocess(cfg).to(device).fit(data.train_x)
    return copy.deepcopy(memo[key])


def set_up(run: Run) -> None:
    """Threads, device, data, model, optimiser, schedule, generator, writer, monitor."""
    cfg = run.cfg
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run.summary["threads"] = torch.get_num_threads()  # bitwise results need the same count
    run.device, run.data, run.preprocess, run.model = prepare(cfg)
    steps_per_epoch = math.ceil(len(run.data.train_x) / cfg.trainer.batch_size)
    run.total_steps = cfg.trainer.epochs * steps_per_epoch
    if cfg.trainer.max_steps is not None:
        run.total_steps = min(run.total_steps, cfg.trainer.max_steps)
    validate_steps(cfg, run.total_steps)
    run.optimizer = build.build_optimizer(cfg, run.model)
    run.scheduler = build.build_scheduler(cfg, run.optimizer, run.total_steps)
    run.augment = build.build_augment(cfg)
    run.averaged = averaging.build_averaged(cfg, run.model)  # None unless ema_decay/swa_start
    run.decay_weights, _ = build.decay_parameters(run.model)
    run.l1 = cfg.regularizer.l1
    run.generator = torch.Generator(device=run.device).manual_seed(cfg.seed)
    run.tally = target.Tally(1, cfg.trainer.target_train_error)
    run.summary["transfer"] = transfer.describe(cfg, run.model)
    run.summary.update(
        params=sum(p.numel() for p in run.model.parameters()),
        num_classes=run.data.num_classes,  # chance accuracy 1/C: a diverged job's score (scores.py)
        target_train_error=cfg.trainer.target_train_error,
        steps_to_target=None,
        seconds_to_target=None,
        metrics={},
    )


def fresh(run: Run) -> None:
    """A fresh run: nothing of an earlier attempt is kept (one events file, no stale history)."""
    for name in LEFTOVERS:
        (run.run_dir / name).unlink(missing_ok=True)
    tb.remove_event_files(run.run_dir)
    run.writer = tb.open_writer(run.run_dir, run.cfg)
    _open_monitor(run, layout=True)
    cfg = run.cfg
    n = cfg.trainer.eval_batch_size
    run.summary["initial_loss"], _ = evaluate(
        run.model, run.preprocess, run.data.train_x[:n], run.data.train_y[:n], n
    )
    log.debug(  # shown with -v
        "%s | %d params | %d train examples | initial loss %.4f (ln %d = %.4f)",
        run.device, run.summary["params"], len(run.data.train_x), run.summary["initial_loss"],
        run.data.num_classes, math.log(run.data.num_classes),
    )  # fmt: skip
    run.summary["diagnostics"] = set_up_diagnostics(run)
    for line in run.summary["diagnostics"]:
        log.log(terminal.run_level(logging.WARNING), line)
    _open_bar(run)
    run.model.train()


def set_up_diagnostics(run: Run) -> list[str]:
    """Before training: Xavier on a ReLU-family activation; an initial loss far from ln C."""
    return diagnostics.init_meets_activation(run.cfg) + diagnostics.initial_loss(
        run.summary["initial_loss"], run.data.num_classes
    )


def resume(run: Run, state: dict[str, Any]) -> None:
    """Continue from a checkpoint; TensorBoard keeps the events written before it, in one file."""
    run.writer = tb.reopen_writer(run.run_dir, state["step"], state["events_bytes"])
    _open_monitor(run, layout=False)
    checkpoint.restore(run, state)
    log.info("resumed from %s at step %d (epoch %d)", run.run_dir, run.step, run.epoch)
    _open_bar(run)
    run.model.train()


def _open_monitor(run: Run, layout: bool) -> None:
    if run.cfg.stats.enabled:
        run.monitor = stats.Monitor(run.model, run.cfg, run.writer, layout=layout)


def _open_bar(run: Run) -> None:
    run.bar = terminal.progress_bar(run.total_steps, run.step, run.cfg.trainer.progress)
