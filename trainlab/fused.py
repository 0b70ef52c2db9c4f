"""Jobs that differ only in seed, trained together as one fused model (trainlab.fused_models).

`train_fused(cfgs, run_dirs)` trains K configurations that are equal but for `seed` as one
model and writes, for every member, what `train(cfg, run_dir)` writes for it alone:
summary.json (plus `fused`: the group), history.json, a TensorBoard run with the same tags
and hparams, and checkpoint.pt (the member's own model and preprocessing). Each member
starts from the weights its own run draws (built by `train.prepare` under its seed), and
draws its own data order and augmentation from its own generator in the same order as a
separate run. The objective is the sum of the members' mean losses, so each member's
gradient, and its optimiser update (elementwise in every torch optimiser here), is its own.
A member whose loss turns non-finite is recorded as diverged, at the step its own run would
report, and masked out of the objective; the others go on.

Not fused (FusionUnsupported, the caller trains the jobs separately): models other than the
MLP, layers with per-member parameters other than linear and batch norm, and
`stats.enabled=true` (per-layer statistics per member are not collected here yet).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from trainlab import bn_modes, build, ensembles, initializers, runs, target, tb, terminal
from trainlab.fused_models import FusedMLP, FusionUnsupported, fuse
from trainlab.io import atomic_torch_save, write_json
from trainlab.train import LOG_EVERY, log_curve, prepare
from trainlab.validate import validate

log = logging.getLogger("trainlab")


@dataclass(eq=False)
class Member:
    """One job of the group: its config, directory and what it writes."""

    cfg: DictConfig
    run_dir: Path
    summary: dict[str, Any]
    writer: Any = None
    model: Any = None  # its own unfused model: initial weights, then the trained ones
    alive: bool = True
    best_val_acc: float = -math.inf
    last_sync: tuple[int, float] = (0, 0.0)  # (step, seconds) of the previous host sync
    history: dict[str, list] = field(default_factory=lambda: {"epochs": [], "steps": []})


def why_not_fusable(cfgs: list[DictConfig]) -> str | None:
    """None when the configs differ only in seed and have a fused form; else the reason."""
    if len(cfgs) < 2:
        return "fewer than 2 jobs"
    plain = [OmegaConf.to_container(c, resolve=True) for c in cfgs]
    for p in plain:
        p.pop("seed", None)
    if any(p != plain[0] for p in plain[1:]):
        return "the jobs differ in more than the seed"
    if len({c.seed for c in cfgs}) < len(cfgs):
        return "two jobs share a seed"
    if cfgs[0].stats.enabled:
        return "stats.enabled=true (per-member statistics are not collected in fused training)"
    if cfgs[0].model.name != "mlp":
        return f"model={cfgs[0].model.name} has no fused form (mlp has)"
    t = cfgs[0].trainer
    if t.get("ema_decay") is not None or t.get("swa_start") is not None:
        return "trainer.ema_decay/swa_start (averaged weights are not kept in fused training)"
    if cfgs[0].model.get("pretrained") or cfgs[0].transfer.get("source") is not None:
        return "model.pretrained/transfer.source (transfer runs unfused)"
    return None


def train_fused(cfgs: list[DictConfig], run_dirs: list[str | Path]) -> list[dict[str, Any]]:
    """Train the K configs as one fused model; one summary per member, as `train` returns.

    Raises FusionUnsupported, having written nothing, when they have no fused form.
    """
    reason = why_not_fusable(cfgs)
    if reason is not None:
        raise FusionUnsupported(reason)
    for cfg in cfgs:
        validate(cfg)
    members = [
        Member(c, Path(d), runs.running_summary(c)) for c, d in zip(cfgs, run_dirs, strict=True)
    ]
    threads = torch.get_num_threads()
    try:
        if cfgs[0].threads:
            torch.set_num_threads(cfgs[0].threads)
        for m in members:  # each member drawn exactly as its own run draws it
            device, data, preprocess, m.model = prepare(m.cfg)
        model = fuse([m.model for m in members])
    except BaseException:
        torch.set_num_threads(threads)
        raise
    try:
        for m in members:
            m.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(m.run_dir / "summary.json", m.summary)
        _train(members, model, device, data, preprocess)
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
    return [m.summary for m in members]


def _train(members: list[Member], model: FusedMLP, device, data, preprocess) -> None:
    cfg = members[0].cfg
    k, n_train, bs = len(members), len(data.train_x), cfg.trainer.batch_size
    total_steps = cfg.trainer.epochs * math.ceil(n_train / bs)
    if cfg.trainer.max_steps is not None:
        total_steps = min(total_steps, cfg.trainer.max_steps)
    weights = model.fused_weights()
    others = [p for p in model.parameters() if all(p is not w for w in weights)]
    optimizer = build.optimizer_from_groups(cfg, weights, others)
    scheduler = build.build_scheduler(cfg, optimizer, total_steps)
    augment = build.build_augment(cfg) if cfg.augmentation.ops else None
    generators = [torch.Generator(device=device).manual_seed(m.cfg.seed) for m in members]
    eval_bs = cfg.trainer.eval_batch_size
    n0 = min(eval_bs, n_train)
    initial = evaluate(model, preprocess, data.train_x[:n0], data.train_y[:n0], eval_bs)
    for i, m in enumerate(members):
        m.writer = tb.open_writer(m.run_dir, m.cfg)
        m.summary.update(
            threads=torch.get_num_threads(), params=sum(p.numel() for p in m.model.parameters()),
            target_train_error=cfg.trainer.target_train_error, steps_to_target=None,
            seconds_to_target=None, metrics={}, initial_loss=initial[i][0],
            fused={"members": k, "seeds": [x.cfg.seed for x in members]},
        )  # fmt: skip
    log.debug("fused: %d seeds as one model on %s | %d train examples", k, device, n_train)
    alive = torch.ones(k, dtype=torch.bool, device=device)
    window = torch.zeros(k, 3, device=device)  # (loss sum, correct, examples) per member
    epoch_sums = torch.zeros(k, 3, device=device)
    ring = torch.zeros(target.WINDOW, 2, k, device=device)  # target.update, per member
    hit = torch.full((k,), -1.0, device=device)
    step, epoch, lr, start, train_time = 0, 0, math.nan, time.perf_counter(), 0.0
    model.train()
    while step < total_steps:
        epoch += 1
        tick = time.perf_counter()
        perms = torch.stack(
            [torch.randperm(n_train, device=device, generator=g) for g in generators]
        )
        epoch_sums.zero_()
        for i in range(0, n_train, bs):
            if step >= total_steps:
                break
            idx = perms[:, i : i + bs]  # (K, B): each member's own batch
            x = data.train_x[idx]  # (K, B, *in_shape)
            if augment is not None:
                x = torch.stack([augment(x[j], g) for j, g in enumerate(generators)])
            x = preprocess(x.flatten(0, 1)).view(x.shape)
            y = data.train_y[idx]  # (K, B)
            logits = model(x)  # (K, B, C)
            losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
            losses = losses.view(k, -1).mean(1)  # (K,) each member's own mean loss
            objective = losses
            if cfg.regularizer.l1 > 0:
                penalty = sum(w.abs().flatten(1).sum(1) for w in weights)  # (K,)
                objective = losses + cfg.regularizer.l1 * penalty
            objective = torch.where(alive, objective, 0.0).sum()  # diverged members: no gradient
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            step += 1
            count = torch.full_like(losses.detach(), y.shape[1])
            batch = torch.stack([losses.detach() * count, (logits.argmax(2) == y).sum(1), count], 1)
            window += batch
            epoch_sums += batch
            hit = target.update(ring, hit, step, batch[:, 1], count, cfg.trainer.target_train_error)
            if step % LOG_EVERY == 0 or step == total_steps:
                _log_window(members, window, hit, step, lr, time.perf_counter() - start)
                alive.copy_(torch.tensor([m.alive for m in members]))
        epoch_s = time.perf_counter() - tick
        train_time += epoch_s
        val = evaluate(model, preprocess, data.val_x, data.val_y, eval_bs)
        sums = epoch_sums.tolist()
        ends = (epoch_sums[:, 0] + window[:, 0]).tolist()
        for i, m in enumerate(members):
            if m.alive:
                _end_epoch(
                    m, epoch, step, sums[i], val[i], lr, time.perf_counter() - start, epoch_s
                )
                if m.cfg.trainer.checkpoint and not math.isfinite(ends[i]):
                    _diverge(m, step, ends[i])  # where its own run's checkpoint would stop it
        alive.copy_(torch.tensor([m.alive for m in members]))
    _finish(members, model, preprocess, data, step, epoch, time.perf_counter() - start, train_time)


@torch.no_grad()
def evaluate(
    model: FusedMLP, preprocess, x: Tensor, y: Tensor, batch_size: int
) -> list[list[float]]:
    """[(mean loss, accuracy)] per member in eval mode, one host sync; NaN for an empty split."""
    if len(x) == 0:
        return [[math.nan, math.nan]] * model.k
    model.eval()
    sums = torch.zeros(model.k, 2, device=x.device)
    for i in range(0, len(x), batch_size):
        xb, yb = preprocess(x[i : i + batch_size]), y[i : i + batch_size]
        logits = model(xb.expand(model.k, *xb.shape))  # every member sees the same examples
        loss = F.cross_entropy(logits.flatten(0, 1), yb.repeat(model.k), reduction="none")
        sums[:, 0] += loss.view(model.k, -1).sum(1)
        sums[:, 1] += (logits.argmax(2) == yb).sum(1)
    model.train()
    return (sums / len(x)).tolist()


def _diverge(m: Member, step: int, loss: float) -> None:
    m.alive = False
    m.summary.update(status="diverged", error=f"non-finite loss ({loss}) at step {step}",
                     diverged_at_step=step)  # fmt: skip
    log.log(
        terminal.run_level(logging.WARNING),
        "seed %d diverged: non-finite loss at step %d (masked out)",
        m.cfg.seed,
        step,
    )


def _log_window(
    members: list[Member], window: Tensor, hit: Tensor, step: int, lr: float, elapsed: float
) -> None:
    """Each member's curves since the last sync (one host copy for all); NaN/inf: diverged."""
    rows = torch.cat([window, hit[:, None]], 1).tolist()  # (K, 4): the one sync
    window.zero_()
    for m, (w_loss, w_correct, w_n, m_hit) in zip(members, rows, strict=True):
        if not m.alive:
            continue
        w_loss, w_acc = w_loss / w_n, w_correct / w_n
        if not math.isfinite(w_loss):
            _diverge(m, step, w_loss)
            continue
        log_curve(m.history, m.writer, step, w_loss, w_acc, lr, elapsed)
        reached = target.found(m_hit, m.last_sync, step, elapsed)
        m.last_sync = (step, elapsed)
        if m.summary["steps_to_target"] is None and reached:
            m.summary.update(steps_to_target=reached[0], seconds_to_target=reached[1])


def _end_epoch(m: Member, epoch: int, step: int, sums: list[float], val: list[float],
               lr: float, elapsed: float, epoch_s: float) -> None:  # fmt: skip
    e_loss, e_correct, e_n = sums
    val_loss, val_acc = val
    if math.isfinite(val_acc):
        m.best_val_acc = max(m.best_val_acc, val_acc)
    m.history["epochs"].append(
        {
            "epoch": epoch, "step": step, "train_loss": e_loss / e_n, "train_acc": e_correct / e_n,
            "val_loss": val_loss, "val_acc": val_acc, "lr": lr, "time_s": elapsed,
        }
    )  # fmt: skip
    m.writer.add_scalar("val/loss", val_loss, step)
    m.writer.add_scalar("val/acc", val_acc, step)
    m.writer.add_scalar("examples/s", e_n / max(epoch_s, 1e-9), step)


def _finish(members: list[Member], model: FusedMLP, preprocess, data, step: int, epoch: int,
            wall: float, train_time: float) -> None:  # fmt: skip
    """Train and test metrics, each member's own model and checkpoint, the final files."""
    eval_bs = members[0].cfg.trainer.eval_batch_size
    train_m = evaluate(model, preprocess, data.train_x, data.train_y, eval_bs)
    test_m = evaluate(model, preprocess, data.test_x, data.test_y, eval_bs)
    for i, m in enumerate(members):
        write_json(m.run_dir / "history.json", m.history)
        if not m.alive:
            continue
        m.model.load_state_dict(model.member_state_dict(i))
        if m.cfg.trainer.predictions:  # the member's own model, as its separate run saves it
            ensembles.save_predictions(m.run_dir, m.model, preprocess, data, eval_bs)
        m.writer.add_scalar("test/acc", test_m[i][1], step)
        m.writer.add_scalar("test/loss", test_m[i][0], step)
        last = m.history["epochs"][-1]
        m.summary.update(
            status="completed", train_loss=train_m[i][0], train_acc=train_m[i][1],
            val_loss=last["val_loss"], val_acc=last["val_acc"], test_loss=test_m[i][0],
            test_acc=test_m[i][1], steps=step, epochs=epoch, wall_time_s=wall,
            best_val_acc=m.best_val_acc if math.isfinite(m.best_val_acc) else None,
            examples_per_s=step * m.cfg.trainer.batch_size / max(train_time, 1e-9),
        )  # fmt: skip
        m.summary["metrics"]["unit_max_diff"] = initializers.unit_max_difference(m.model)
        m.summary["metrics"].update(
            bn_modes.batch_stats_metrics(
                m.model,
                preprocess,
                data.val_x,
                data.val_y,
                m.cfg.trainer.batch_size,
                m.summary["val_acc"],
            )
        )  # fmt: skip  (the metrics its own run's summary holds)
        if m.cfg.trainer.checkpoint:
            atomic_torch_save(m.run_dir / "checkpoint.pt", {
                "finished": True, "config_hash": m.summary["config_hash"],
                "config": OmegaConf.to_container(m.cfg, resolve=True),
                "model": m.model.state_dict(), "preprocess": preprocess.state_dict(),
                "step": step, "fused": m.summary["fused"],
            })  # fmt: skip
    log.debug("fused: done, %d steps in %.1f s; test acc %s", step, wall,
             " ".join(f"{t[1]:.4f}" for t in test_m))  # fmt: skip
