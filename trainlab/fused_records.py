"""The per-member records of a fused run (trainlab.fused): curves, epochs, divergence and
the final metrics, each written to the member's own files as its separate run writes them."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor

from trainlab import bn_modes, ensembles, initializers, start, stats, target, terminal
from trainlab.data import Splits
from trainlab.fused_models import FusedModel
from trainlab.loop import log_curve

log = logging.getLogger("trainlab")


@dataclass(eq=False)
class Member:
    """One job of the group: its config, directory and what it writes."""

    cfg: DictConfig
    run_dir: Path
    summary: dict[str, Any]
    writer: Any = None
    model: Any = None  # its own unfused model: initial weights, then the trained ones
    optimizer: Any = None  # its own optimiser over `model`, for its checkpoint's layout
    run: Any = None  # its checkpoint.Run, built at its first checkpoint (fused_checkpoint)
    stats: stats.MemberStats | None = None  # its per-layer statistics (stats.enabled)
    set_up_diagnostics: list[str] = field(default_factory=list)
    alive: bool = True
    preprocess: Any = None  # its own fitted preprocessing
    lr_scale: float = 1.0  # its optimizer.lr over the group's largest (trainlab.fused)
    overrides: list[str] | None = None  # its job's overrides (its TensorBoard hparams)
    best_val_acc: float = -math.inf
    last_sync: tuple[int, float] = (0, 0.0)  # (step, seconds) of the previous host sync
    history: dict[str, list] = field(default_factory=lambda: {"epochs": [], "steps": []})
    probs: dict[str, list] = field(default_factory=dict)  # its last val and test predictions


@dataclass(eq=False)
class Group:
    """The fused run: its members, the fused model and what trains it, and its progress."""

    members: list[Member]
    model: FusedModel
    device: torch.device
    data: Splits
    preprocess: Any  # the members' shared preprocessing; None: each member its own
    dropout: list[torch.Generator]  # each member's dropout generator
    generators: list[torch.Generator] = field(default_factory=list)  # data order, augmentation
    optimizer: Any = None
    scheduler: Any = None
    monitor: stats.Monitor | None = None
    total_steps: int = 0
    step: int = 0
    epoch: int = 0
    perms: Tensor | None = None  # (K, n_train): this epoch's order per member
    batch_start: int = 0
    tally: target.Tally = None  # each member's curve sums and steps to target
    lr: float = math.nan  # the lr the last step used, at the group's largest optimizer.lr
    lr_scales: Tensor | None = None  # (K, 1) each member's lr over that; None: all alike
    weight_decays: Tensor | None = None  # (K, 1) each member's own; None: all alike
    clock: float = field(default_factory=time.perf_counter)
    train_time: float = 0.0  # training steps
    eval_time: float = 0.0  # validation, final metrics, predictions (as a run's eval_time_s)
    epoch_train_s: float = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.clock

    def preprocessings(self) -> Any:
        """What evaluate takes: the shared preprocessing, or each member's own in a list."""
        return (
            self.preprocess if self.preprocess is not None else [m.preprocess for m in self.members]
        )


@torch.no_grad()
def evaluate(
    model: FusedModel, preprocess, x: Tensor, y: Tensor, batch_size: int
) -> list[list[float]]:
    """[(mean loss, accuracy)] per member in eval mode, one host sync; NaN for an empty split."""
    if len(x) == 0:
        return [[math.nan, math.nan]] * model.k
    model.eval()
    sums = torch.zeros(model.k, 2, device=x.device)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        if isinstance(preprocess, list):  # each member its own preprocessing
            xb = torch.stack([p(xb) for p in preprocess])
        else:
            xb = preprocess(xb).expand(model.k, *xb.shape)
        logits = model(xb)  # every member sees the same examples
        loss = F.cross_entropy(logits.flatten(0, 1), yb.repeat(model.k), reduction="none")
        sums[:, 0] += loss.view(model.k, -1).sum(1)
        sums[:, 1] += (logits.argmax(2) == yb).sum(1)
    model.train()
    return (sums / len(x)).tolist()


def member_metrics(g: Group, splits: dict[str, tuple[Tensor, Tensor]],
                   keep: tuple[str, ...] = ()) -> list[dict[str, tuple[float, float]]]:  # fmt: skip
    """Per member, (mean loss, accuracy) on each named split, NaN for one that diverged: each
    member's weights in its own model (left there), evaluated as its separate run evaluates
    (start.evaluate), so the numbers are those that run computes from those weights. Not the
    fused model: its batches of K x eval_batch_size rows leave the caches; it evaluated
    1.1-2.6x slower than K separate models here (MLPs and the CNN, K 4-50: `python
    scripts/bench_fused.py --eval`). The splits named in `keep` also leave their
    probabilities in `Member.probs` (its predictions, from the same pass)."""
    out = []
    for i, m in enumerate(g.members):
        if not m.alive:
            out.append(dict.fromkeys(splits, (math.nan, math.nan)))
            continue
        m.model.load_state_dict(g.model.member_state_dict(i))
        bs = m.cfg.trainer.eval_batch_size
        row = {}
        for name, (x, y) in splits.items():
            probs = None
            if name in keep:
                probs = m.probs[name] = []
            row[name] = start.evaluate(m.model, m.preprocess, x, y, bs, probs=probs)
        out.append(row)
    return out


def keep_statistics(m: Member) -> None:
    """Summary metrics and diagnostics from the member's captures, as its run keeps them."""
    m.summary["diagnostics"] = list(m.set_up_diagnostics)
    if m.stats is not None:
        m.summary["metrics"].update(m.stats.summary_metrics())
        m.summary["diagnostics"] += m.stats.diagnostics()


def diverge(m: Member, step: int, loss: float) -> None:
    m.alive = False
    if m.stats is not None:
        m.stats.active = False
    keep_statistics(m)
    m.summary.update(status="diverged", error=f"non-finite loss ({loss}) at step {step}",
                     diverged_at_step=step)  # fmt: skip
    log.log(
        terminal.run_level(logging.WARNING),
        "seed %d diverged: non-finite loss at step %d (masked out)",
        m.cfg.seed,
        step,
    )


def log_window(g: Group) -> None:
    """Each member's curves since the last sync (one host copy for all); NaN/inf: diverged."""
    step, elapsed = g.step, g.elapsed()
    rows = g.tally.take_window()  # the one sync, for all members
    for m, (w_loss, w_correct, w_n), m_hit in zip(g.members, rows, g.tally.hit, strict=True):
        if not m.alive:
            continue
        w_loss, w_acc = w_loss / w_n, w_correct / w_n
        if not math.isfinite(w_loss):
            diverge(m, step, w_loss)
            continue
        log_curve(m.history, m.writer, step, w_loss, w_acc, g.lr * m.lr_scale, elapsed)
        reached = target.found(m_hit, m.last_sync, step, elapsed)
        m.last_sync = (step, elapsed)
        if m.summary["steps_to_target"] is None and reached:
            m.summary.update(steps_to_target=reached[0], seconds_to_target=reached[1])


def end_epoch(g: Group) -> None:
    """Validation and each member's epoch record; a member whose loss is non-finite diverged
    (where its own run's checkpoint would stop it)."""
    last = g.members[0].cfg.trainer.predictions and g.step >= g.total_steps  # finish saves them
    splits = {"val": (g.data.val_x, g.data.val_y)}
    val = [m["val"] for m in member_metrics(g, splits, keep=("val",) if last else ())]
    g.tally.sync()
    sums = g.tally.epoch
    ends = [e[0] + w[0] for e, w in zip(g.tally.epoch, g.tally.window, strict=True)]
    for i, m in enumerate(g.members):
        if not m.alive:
            continue
        e_loss, e_correct, e_n = sums[i]
        val_loss, val_acc = val[i]
        if math.isfinite(val_acc):
            m.best_val_acc = max(m.best_val_acc, val_acc)
        m.history["epochs"].append({
            "epoch": g.epoch, "step": g.step, "train_loss": e_loss / e_n,
            "train_acc": e_correct / e_n, "val_loss": val_loss, "val_acc": val_acc,
            "lr": g.lr * m.lr_scale, "time_s": g.elapsed(),
        })  # fmt: skip
        m.writer.add_scalar("val/loss", val_loss, g.step)
        m.writer.add_scalar("val/acc", val_acc, g.step)
        m.writer.add_scalar("examples/s", e_n / max(g.epoch_train_s, 1e-9), g.step)
        if m.cfg.trainer.checkpoint and not math.isfinite(ends[i]):
            diverge(m, g.step, ends[i])


def finish(g: Group) -> None:
    """Train and test metrics, each member's own model, predictions and summary."""
    members, data = g.members, g.data
    eval_bs = members[0].cfg.trainer.eval_batch_size
    splits = {"train": (data.train_x, data.train_y), "test": (data.test_x, data.test_y)}
    keep = ("test",) if members[0].cfg.trainer.predictions else ()
    metrics = member_metrics(g, splits, keep=keep)
    train_m, test_m = [m["train"] for m in metrics], [m["test"] for m in metrics]
    step, wall = g.step, g.elapsed()
    for i, m in enumerate(members):
        if not m.alive:
            continue
        if m.cfg.trainer.predictions:  # the member's own model, as its separate run saves it
            ensembles.save_predictions(m.run_dir, m.model, m.preprocess, data, eval_bs, m.probs)
        m.writer.add_scalar("test/acc", test_m[i][1], step)
        m.writer.add_scalar("test/loss", test_m[i][0], step)
        last = m.history["epochs"][-1]
        m.summary.update(
            status="completed", train_loss=train_m[i][0], train_acc=train_m[i][1],
            val_loss=last["val_loss"], val_acc=last["val_acc"], test_loss=test_m[i][0],
            test_acc=test_m[i][1], steps=step, epochs=g.epoch, wall_time_s=wall,
            best_val_acc=m.best_val_acc if math.isfinite(m.best_val_acc) else None,
            examples_per_s=step * m.cfg.trainer.batch_size / max(g.train_time, 1e-9),
        )  # fmt: skip
        m.summary["metrics"]["unit_max_diff"] = initializers.unit_max_difference(m.model)
        m.summary["metrics"].update(
            bn_modes.batch_stats_metrics(
                m.model,
                m.preprocess,
                data.val_x,
                data.val_y,
                m.cfg.trainer.batch_size,
                m.summary["val_acc"],
            )
        )  # fmt: skip  (the metrics its own run's summary holds)
        keep_statistics(m)
        for line in m.summary["diagnostics"]:
            log.log(terminal.run_level(logging.WARNING), "seed %d: %s", m.cfg.seed, line)
    log.debug("fused: done, %d steps in %.1f s; test acc %s", step, wall,
             " ".join(f"{t[1]:.4f}" for t in test_m))  # fmt: skip
