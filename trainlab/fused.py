"""Jobs that differ only in seed, trained together as one fused model (trainlab.fused_models).

`train_fused(cfgs, run_dirs)` trains K configurations that are equal but for `seed` as one
model and writes, for every member, what `train(cfg, run_dir)` writes for it alone:
summary.json (plus `fused`: the group), history.json, a TensorBoard run with the same tags
and hparams, and checkpoint.pt in the standard format (trainlab.fused_checkpoint: a killed
fused run resumes each member separately from its own checkpoint). Each member
starts from the weights its own run draws (built by `train.prepare` under its seed), and
draws its own data order and augmentation from its own generator in the same order as a
separate run. The objective is the sum of the members' mean losses, so each member's
gradient, and its optimiser update (elementwise in every torch optimiser here), is its own.
A member whose loss turns non-finite is recorded as diverged, at the step its own run would
report, and masked out of the objective; the others go on.

Per-layer statistics (stats.enabled, the default) are collected per member on its slice of
the fused activations, weights and gradients (stats.Monitor with one writer per member):
the same snapshots, TensorBoard tags, summary metrics and diagnostics as its own run. Each
member's dropout masks come from its own generator, holding the global RNG state its own run
has after building the model, so on the CPU a member draws exactly its run's masks.

The MLP's linear layers run as one batched matmul, the CNN's convolutions as one grouped
convolution (K groups) with batch norm, pooling and activations per member
(trainlab.fused_models). Not fused (FusionUnsupported, the caller trains the jobs
separately): other models, layers with per-member state other than linear, conv,
batch/layer/group/instance norm and PReLU, averaged weights (EMA/SWA) and transfer.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from trainlab import (
    build,
    diagnostics,
    fused_checkpoint,
    hparams,
    runs,
    stats,
    target,
    tb,
    terminal,
    transfer,
)
from trainlab.fused_models import FusionUnsupported, fuse
from trainlab.fused_plan import plain_config, why_not_fusable
from trainlab.fused_records import Group, Member, end_epoch, evaluate, finish, log_window
from trainlab.io import write_json
from trainlab.loop import LOG_EVERY
from trainlab.start import prepare
from trainlab.validate import validate

log = logging.getLogger("trainlab")


def train_fused(cfgs: list[DictConfig], run_dirs: list[str | Path],
                overrides: list[list[str]] | None = None,
                validated: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Train the K configs as one fused model; one summary per member, as `train` returns.
    `validated`: the caller has validated every config (a part of fusable_parts).

    Raises FusionUnsupported, having written nothing, when they have no fused form.
    """
    reason = why_not_fusable(cfgs)
    if reason is not None:
        raise FusionUnsupported(reason)
    checked: list[dict] = []
    for cfg in cfgs if not validated else []:  # not the seed: each that differs in more, once
        plain = plain_config(cfg, "seed")
        if plain not in checked:
            validate(cfg)
            checked.append(plain)
    top = max(c.optimizer.lr for c in cfgs)  # the group steps at the largest lr (_step_scaled)
    members = [
        Member(c, Path(d), runs.running_summary(c), lr_scale=c.optimizer.lr / top, overrides=o)
        for c, d, o in zip(cfgs, run_dirs, overrides or [None] * len(cfgs), strict=True)
    ]
    threads = torch.get_num_threads()
    try:
        if cfgs[0].threads:
            torch.set_num_threads(cfgs[0].threads)
        dropout, own, fitted = [], [], {}
        for m in members:  # each member drawn exactly as its own run draws it
            device, data, m.preprocess, m.model = prepare(m.cfg, fitted)
            dropout.append(_global_rng(device))  # what its run's dropout draws from next
            own.append(OmegaConf.to_container(m.cfg.preprocess, resolve=True))
        preprocess = members[0].preprocess if all(o == own[0] for o in own) else None
        group = Group(members, fuse([m.model for m in members], dropout), device, data,
                      preprocess, dropout)  # fmt: skip
    except BaseException:
        torch.set_num_threads(threads)
        raise
    locks = ExitStack()  # one process per run directory, as train holds its own
    try:
        for m in members:
            m.run_dir.mkdir(parents=True, exist_ok=True)
            locks.enter_context(runs.hold(m.run_dir))  # busy: ConfigError, nothing written
    except BaseException:
        locks.close()
        torch.set_num_threads(threads)
        raise
    with locks:
        late = _train_held(group, members, threads)
    if late is not None:
        raise runs.Interrupted(late, group.step, members[0].run_dir, completed=True)
    return [m.summary for m in members]


def _train_held(group: Group, members: list[Member], threads: int) -> int | None:
    """Train the group, recording how each member ended whatever happens; the signal that
    came during the final evaluation, if one did."""
    late = None
    try:
        for m in members:
            write_json(m.run_dir / "summary.json", m.summary)
        with runs.stop_on_signals() as stop:
            _train(group, stop)
            late = stop.signum  # during the final evaluation: the members completed
    except runs.Interrupted as err:
        for m in members:
            if m.alive:
                m.summary.update(status="interrupted", error=str(err))
        raise
    except BaseException as err:
        for m in members:
            if m.alive:
                m.summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        torch.set_num_threads(threads)
        for m in members:
            if m.writer is not None:
                m.writer.close(m.summary.get("status"))
            write_json(m.run_dir / "summary.json", m.summary)
    return late


def _set_up(g: Group) -> None:
    """Optimiser, schedule, generators, writers, initial loss, diagnostics, monitor."""
    cfg, members, data = g.members[0].cfg, g.members, g.data
    g.total_steps = cfg.trainer.epochs * math.ceil(len(data.train_x) / cfg.trainer.batch_size)
    if cfg.trainer.max_steps is not None:
        g.total_steps = min(g.total_steps, cfg.trainer.max_steps)
    weights = g.model.fused_weights()
    others = [p for p in g.model.parameters() if all(p is not w for w in weights)]
    top = max(members, key=lambda m: m.lr_scale).cfg  # the largest lr; all else is alike
    g.optimizer = build.optimizer_from_groups(top, weights, others)
    decays = [m.cfg.regularizer.weight_decay for m in members]
    if len(set(decays)) > 1:  # each member's own, added to its rows of the gradient (_step)
        g.optimizer.param_groups[0]["weight_decay"] = 0.0  # the decayed weights' group
        g.weight_decays = torch.tensor(decays, device=g.device).view(-1, 1)
    g.scheduler = build.build_scheduler(top, g.optimizer, g.total_steps)
    scales = [m.lr_scale for m in members]
    if any(x != 1.0 for x in scales):
        g.lr_scales = torch.tensor(scales, device=g.device).view(-1, 1)
    g.generators = [torch.Generator(device=g.device).manual_seed(m.cfg.seed) for m in members]
    n0 = min(cfg.trainer.eval_batch_size, len(data.train_x))
    initial = evaluate(g.model, g.preprocessings(), data.train_x[:n0], data.train_y[:n0], n0)
    for i, m in enumerate(members):
        token = hparams.MEMBER_OVERRIDES.set(m.overrides)  # its own values in its session
        try:
            m.writer = tb.open_writer(m.run_dir, m.cfg)
        finally:
            hparams.MEMBER_OVERRIDES.reset(token)
        m.summary["transfer"] = transfer.describe(m.cfg, m.model)
        m.summary.update(
            threads=torch.get_num_threads(), params=sum(p.numel() for p in m.model.parameters()),
            num_classes=data.num_classes, target_train_error=cfg.trainer.target_train_error,
            steps_to_target=None, seconds_to_target=None, metrics={}, initial_loss=initial[i][0],
            fused=_describe(members),
        )  # fmt: skip
        m.set_up_diagnostics = diagnostics.init_meets_activation(m.cfg)
        m.set_up_diagnostics += diagnostics.initial_loss(initial[i][0], data.num_classes)
        m.summary["diagnostics"] = list(m.set_up_diagnostics)
        for line in m.set_up_diagnostics:
            log.log(terminal.run_level(logging.WARNING), "seed %d: %s", m.cfg.seed, line)
    if cfg.stats.enabled:
        g.monitor = stats.Monitor(g.model, cfg, writers=[m.writer for m in members],
                                  activations=[m.cfg.activation for m in members])  # fmt: skip
        for m, member_stats in zip(members, g.monitor.members, strict=True):
            m.stats = member_stats
    log.debug("fused: %d seeds as one model on %s | %d train examples", len(members), g.device,
             len(data.train_x))  # fmt: skip


def _train(g: Group, stop: runs.StopFlag) -> None:
    _set_up(g)
    cfg, k, device = g.members[0].cfg, len(g.members), g.device
    n_train, bs, every = len(g.data.train_x), cfg.trainer.batch_size, cfg.trainer.checkpoint_every
    augment = [build.build_augment(m.cfg) if m.cfg.augmentation.ops else None for m in g.members]
    augment = augment if any(a is not None for a in augment) else None  # each its own draws
    g.tally = target.Tally(k, cfg.trainer.target_train_error)
    alive = torch.ones(k, dtype=torch.bool, device=device)
    g.model.train()
    while g.step < g.total_steps:
        g.epoch += 1
        tick = time.perf_counter()
        g.perms = torch.stack(
            [torch.randperm(n_train, device=device, generator=gen) for gen in g.generators]
        )
        g.tally.new_epoch()
        for i in range(0, n_train, bs):
            if g.step >= g.total_steps:
                break
            _step(g, g.perms[:, i : i + bs], augment, alive)  # (K, B): each member's own batch
            g.batch_start = i + bs
            if g.step % LOG_EVERY == 0 or g.step == g.total_steps:
                log_window(g)
                alive.copy_(torch.tensor([m.alive for m in g.members]))
            if stop.signum is not None:
                fused_checkpoint.save(g)
                raise runs.Interrupted(stop.signum, g.step, g.members[0].run_dir)
            if every and g.step % every == 0:
                fused_checkpoint.save(g)
        g.epoch_train_s = time.perf_counter() - tick
        g.train_time += g.epoch_train_s
        tick = time.perf_counter()
        end_epoch(g)
        g.eval_time += time.perf_counter() - tick
        g.perms, g.batch_start, g.epoch_train_s = None, 0, 0.0
        if g.step < g.total_steps:  # the last epoch's is the finished checkpoint below
            fused_checkpoint.save(g)
        alive.copy_(torch.tensor([m.alive for m in g.members]))
    tick = time.perf_counter()
    finish(g)
    g.eval_time += time.perf_counter() - tick
    for m in g.members:  # each member's share of the group's training and evaluation
        m.summary.update(train_time_s=g.train_time / k, eval_time_s=g.eval_time / k)
    fused_checkpoint.save(g, finished=True)
    for m in g.members:
        write_json(m.run_dir / "history.json", m.history)


def _step(g: Group, idx: torch.Tensor, augment, alive: torch.Tensor) -> None:
    """One optimiser step of every member on its own batch."""
    cfg, k, monitor = g.members[0].cfg, len(g.members), g.monitor
    x = g.data.train_x[idx]  # (K, B, *in_shape)
    if augment is not None:
        x = torch.stack([f(x[j], gen) if f is not None else x[j] for j, (f, gen) in
                         enumerate(zip(augment, g.generators, strict=True))])  # fmt: skip
    if g.preprocess is not None:
        x = g.preprocess(x.flatten(0, 1)).view(x.shape)
    else:  # each member its own preprocessing, fitted on the train split as its run fits it
        x = torch.stack([m.preprocess(x[j]) for j, m in enumerate(g.members)])
    y = g.data.train_y[idx]  # (K, B)
    with monitor.capture(g.step) if monitor else nullcontext():
        logits = g.model(x)  # (K, B, C)
    losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    losses = losses.view(k, -1).mean(1)  # (K,) each member's own mean loss
    objective = losses
    if cfg.regularizer.l1 > 0:
        penalty = sum(w.abs().flatten(1).sum(1) for w in g.model.fused_weights())  # (K,)
        objective = losses + cfg.regularizer.l1 * penalty
    objective = torch.where(alive, objective, 0.0).sum()  # diverged members: no gradient
    g.optimizer.zero_grad(set_to_none=True)
    objective.backward()
    if monitor:
        monitor.after_backward(g.step)
    if g.weight_decays is not None:
        _decay_per_member(g.model.fused_weights(), g.weight_decays)
    if g.lr_scales is None:
        g.optimizer.step()
    else:
        _step_scaled(g.optimizer, g.lr_scales)
    if monitor:
        monitor.after_step(g.step, g.optimizer)
    g.lr = g.optimizer.param_groups[0]["lr"]
    g.scheduler.step()
    g.step += 1
    g.tally.add(g.step, losses, logits, y)  # summed at the next host sync


@torch.no_grad()
def _decay_per_member(weights: list[torch.Tensor], decays: torch.Tensor) -> None:
    """grad += weight_decay * param, member k's row with its own weight_decay: what SGD, Adam,
    RMSprop and AdaGrad do with their group's `weight_decay` before their update (why_not_fusable
    leaves AdamW's decoupled decay out)."""
    k = decays.shape[0]
    for w in weights:
        if w.grad is not None:
            w.grad.view(k, -1).add_(w.view(k, -1) * decays)


@torch.no_grad()
def _step_scaled(optimizer: torch.optim.Optimizer, scales: torch.Tensor) -> None:
    """The optimiser's step at the group's largest lr, each member's update then scaled by its
    lr over that one (why_not_fusable: updates are linear in the lr). Scales <= 1 shrink the
    rounding of the difference, never amplify it. A fused parameter holds its members along
    dim 0, so member k's update is row k of (K, -1)."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    before = [p.detach().clone() for p in params]
    optimizer.step()
    k = scales.shape[0]
    for p, b in zip(params, before, strict=True):
        rows, old = p.view(k, -1), b.view(k, -1)
        rows.sub_(old).mul_(scales).add_(old)


def _describe(members: list[Member]) -> dict[str, Any]:
    """summary.json's `fused`: the group's size and seeds, and the values that differ."""
    out: dict[str, Any] = {"members": len(members), "seeds": [m.cfg.seed for m in members]}
    for key in ("lr", "weight_decay"):
        values = [m.cfg.optimizer.lr if key == "lr" else m.cfg.regularizer.weight_decay
                  for m in members]  # fmt: skip
        if len(set(values)) > 1:
            out[key] = values
    for key in ("init", "activation"):
        values = [OmegaConf.to_container(m.cfg[key], resolve=True) for m in members]
        if any(v != values[0] for v in values):
            out[key] = values if key == "init" else [v.get("name") for v in values]
    return out


def _global_rng(device: torch.device) -> torch.Generator:
    """A generator in the state of the default one (which a separate run's dropout uses)."""
    gen = torch.Generator(device=device)
    state = torch.get_rng_state() if device.type == "cpu" else torch.cuda.get_rng_state(device)
    return gen.set_state(state)
