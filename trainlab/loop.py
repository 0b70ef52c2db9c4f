"""One step, one synced window, the end of an epoch, a checkpoint: the body of the loop in
trainlab.train. Host syncs happen every LOG_EVERY steps and at the end of an epoch only."""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from trainlab import averaging, build, checkpoint, start, target, tb
from trainlab.checkpoint import Run
from trainlab.io import write_json
from trainlab.start import evaluate

log = logging.getLogger("trainlab")
LOG_EVERY = 10  # steps between host syncs: loss/acc history, progress bar, divergence check


class Diverged(RuntimeError):
    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"non-finite loss ({loss}) at step {step}")
        self.step = step


def train_step(run: Run, idx: torch.Tensor) -> None:
    """One optimiser step on the batch `idx`; its loss and accuracy are summed at the next sync."""
    monitor, step = run.monitor, run.step
    x = run.preprocess(run.augment(run.data.train_x[idx], run.generator))  # (B, *in_shape)
    y = run.data.train_y[idx]
    with monitor.capture(step) if monitor else nullcontext():
        logits = run.model(x)
    loss = F.cross_entropy(logits, y)
    objective = loss
    if run.l1 > 0:
        objective = loss + run.l1 * build.l1_penalty(run.decay_weights)
    run.optimizer.zero_grad(set_to_none=True)
    objective.backward()
    if monitor:
        monitor.after_backward(step)
    run.optimizer.step()
    if monitor:
        monitor.after_step(step, run.optimizer)
    run.lr = run.optimizer.param_groups[0]["lr"]  # the lr this step used
    run.scheduler.step()
    if run.averaged is not None:
        run.averaged.update(run.model, run.epoch)
    run.step += 1
    run.tally.add(run.step, loss, logits, y)  # references: summed at the next host sync


def log_window(run: Run) -> None:
    """The curves since the last sync: history, TensorBoard, bar; raises Diverged on NaN/inf."""
    elapsed = run.elapsed()
    ((w_loss, w_correct, w_n),) = run.tally.take_window()  # the one sync
    w_loss, w_acc = w_loss / w_n, w_correct / w_n
    if not math.isfinite(w_loss):
        keep_statistics(run)  # what was captured before the blow-up is kept
        raise Diverged(run.step, w_loss)
    step = run.step
    log_curve(run.history, run.writer, step, w_loss, w_acc, run.lr, elapsed)
    reached = target.found(run.tally.hit[0], run.last_sync, step, elapsed)
    run.last_sync = (step, elapsed)
    if run.summary["steps_to_target"] is None and reached:
        run.summary.update(steps_to_target=reached[0], seconds_to_target=reached[1])
    if not run.bar.disable:  # a hidden bar would still format its postfix
        run.bar.set_postfix(loss=f"{w_loss:.3f}", acc=f"{w_acc:.3f}", refresh=False)
        run.bar.update(step - run.bar.n)


def log_curve(history: dict, writer, step: int, w_loss: float, w_acc: float, lr: float,
              elapsed: float) -> None:  # fmt: skip
    """One synced window of the training curve, into history.json and TensorBoard."""
    history["steps"].append(
        {"step": step, "train_loss": w_loss, "train_acc": w_acc, "lr": lr, "time_s": elapsed}
    )
    tb.add_scalars(writer, [("train/loss", w_loss), ("train/acc", w_acc), ("lr", lr)], step)


def end_epoch(run: Run) -> None:
    """Validation, the epoch's curves, best-so-far; the next batch starts a new epoch."""
    cfg, step = run.cfg, run.step
    run.train_time_s += run.epoch_train_s
    run.tally.sync()
    e_loss, e_correct, e_n = run.tally.epoch[0]
    tick = time.perf_counter()
    last = cfg.trainer.predictions and step >= run.total_steps  # finish saves these: one pass
    run.val_probs = [] if last else None
    val_loss, val_acc = evaluate(run.model, run.preprocess, run.data.val_x, run.data.val_y,
                                 cfg.trainer.eval_batch_size, probs=run.val_probs)  # fmt: skip
    if math.isfinite(val_acc):
        run.best_val_acc = max(run.best_val_acc, val_acc)
    examples_per_s = e_n / max(run.epoch_train_s, 1e-9)  # training only, not evaluation
    run.history["epochs"].append(
        {
            "epoch": run.epoch, "step": step, "train_loss": e_loss / e_n,
            "train_acc": e_correct / e_n, "val_loss": val_loss, "val_acc": val_acc,
            "lr": run.lr, "time_s": run.elapsed(),
        }
    )  # fmt: skip
    run.writer.add_scalar("val/loss", val_loss, step)
    run.writer.add_scalar("val/acc", val_acc, step)
    run.writer.add_scalar("examples/s", examples_per_s, step)
    if run.averaged is not None:  # the averaged weights beside the raw ones
        avg = run.averaged.evaluate(run.preprocess, run.data, ("val",), cfg.trainer.eval_batch_size)
        run.history["epochs"][-1].update(avg)
        averaging.write_scalars(run.writer, avg, step)
    run.eval_time_s += time.perf_counter() - tick
    log.debug(  # shown with -v
        "epoch %d | step %d | train loss %.4f acc %.4f | val loss %.4f acc %.4f | %.0f ex/s",
        run.epoch, step, e_loss / e_n, e_correct / e_n, val_loss, val_acc, examples_per_s,
    )  # fmt: skip
    run.perm, run.batch_start, run.epoch_train_s = None, 0, 0.0


def save_checkpoint(run: Run, finished: bool = False) -> None:
    """Atomically, and never of a blown-up model: the last checkpoint is before any NaN."""
    if not run.cfg.trainer.checkpoint:
        return
    if not finished:
        if not run.tally.finite():
            keep_statistics(run)
            raise Diverged(run.step, run.tally.epoch[0][0] + run.tally.window[0][0])
    checkpoint.save(run.run_dir / "checkpoint.pt", checkpoint.gather(run, finished=finished))
    write_json(run.run_dir / "history.json", run.history)


def keep_statistics(run: Run) -> None:
    run.summary["diagnostics"] = start.set_up_diagnostics(run)
    if run.monitor:
        run.summary["metrics"].update(run.monitor.summary_metrics())
        run.summary["diagnostics"] += run.monitor.diagnostics()
