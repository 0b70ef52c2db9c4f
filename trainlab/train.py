"""train(cfg, run_dir) -> summary: the whole procedure, readable top to bottom.

Data sit on the device as tensors; batches are index slices of a per-epoch permutation;
augmentation and preprocessing run batched on the device. `train` is re-entrant (Hydra's
basic launcher runs sweep jobs in one process): seeds are set and writers closed per call.
A run checkpoints every epoch, every `trainer.checkpoint_every` steps and on SIGINT/SIGTERM,
and a run started in a directory holding an unfinished run of the same config resumes it
exactly (trainlab.checkpoint); a finished one is skipped, another config's is refused.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from tqdm.auto import tqdm

from trainlab import (
    averaging,
    bn_modes,
    build,
    checkpoint,
    diagnostics,
    ensembles,
    initializers,
    runs,
    stats,
    target,
    tb,
    transfer,
)
from trainlab.checkpoint import Run
from trainlab.data import Splits, load_data
from trainlab.errors import ConfigError
from trainlab.io import write_json
from trainlab.validate import validate, validate_data, validate_steps

log = logging.getLogger("trainlab")
LOG_EVERY = 10  # steps between host syncs: loss/acc history, progress bar, divergence check
LEFTOVERS = ("checkpoint.pt", "history.json")  # of an earlier attempt that cannot be resumed


class Diverged(RuntimeError):
    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"non-finite loss ({loss}) at step {step}")
        self.step = step


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
    model: nn.Module, preprocess: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """(mean loss, accuracy) in eval mode; (nan, nan) for an empty split."""
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
    model.train(was_training)
    return loss_sum.item() / len(x), correct.item() / len(x)  # one sync per split


def prepare(cfg: DictConfig) -> tuple[torch.device, Splits, nn.Module, nn.Module]:
    """Device, data on it, preprocessing fitted on the train split, the initialised model."""
    device = resolve_device(cfg.device)
    pretrained = transfer.pretrained_path(cfg)  # may train the cached source model: before seeding
    seed_everything(cfg.seed)
    data = load_data(cfg.data).to(device)
    validate_data(cfg, data.in_shape)
    preprocess = build.build_preprocess(cfg).to(device).fit(data.train_x)
    model = build.build_model(cfg, data.in_shape, data.num_classes).to(device)
    transfer.apply(cfg, model, preprocess, pretrained)
    if model.layout == "spatial":
        model = model.to(memory_format=torch.channels_last)  # ~1.7x faster convs on CPU (oneDNN)
    return device, data, preprocess, model


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train one configuration; write events, checkpoint, history.json and summary.json."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = Run(cfg, run_dir, runs.config_hash(cfg), runs.running_summary(cfg))
    with runs.hold(run_dir):  # one process per run directory
        action = runs.claim(run_dir, run.config_hash)  # another config's: left untouched
        if action == "skip":
            log.info("already finished in %s: skipped", run_dir)
            return runs.read_summary(run_dir)
        return _attempt(run, action)


def _attempt(run: Run, action: str) -> dict[str, Any]:
    """Run (or resume) and record how it ended in summary.json, whatever happens."""
    threads = torch.get_num_threads()
    try:
        write_json(run.run_dir / "summary.json", run.summary)  # never a stale result
        validate(run.cfg)
        with runs.stop_on_signals() as stop:
            _train(run, stop, resume=action == "resume")
        run.summary["status"] = "completed"
    except Diverged as err:
        run.summary.update(status="diverged", error=str(err), diverged_at_step=err.step)
        log.warning("diverged: %s", err)
    except (runs.Interrupted, KeyboardInterrupt) as err:
        run.summary.update(status="interrupted", error=str(err) or "KeyboardInterrupt")
        raise
    except BaseException as err:
        run.summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        torch.set_num_threads(threads)  # the next job of a one-process sweep starts afresh
        _close(run)
        _write(run.run_dir / "summary.json", run.summary, quiet=sys.exc_info()[0] is not None)
    return run.summary


def _write(path: Path, obj: Any, quiet: bool) -> None:
    """A record written on the way out; when an error is already on its way (a full disk),
    failing to write is logged rather than raised over it."""
    try:
        write_json(path, obj)
    except OSError as err:
        if not quiet:
            raise
        log.error("%s not written: %s", path.name, err)


def _train(run: Run, stop: runs.StopFlag, resume: bool) -> None:
    _set_up(run)
    state = checkpoint.load(run.run_dir / "checkpoint.pt", run.device) if resume else None
    if state is not None and state["config_hash"] == run.config_hash:
        _resume(run, state)
    else:
        _start(run)
    n_train, bs = len(run.data.train_x), run.cfg.trainer.batch_size
    every = run.cfg.trainer.checkpoint_every
    while run.step < run.total_steps:
        if run.perm is None:  # a new epoch
            run.epoch += 1
            run.perm = torch.randperm(n_train, device=run.device, generator=run.generator)
            run.epoch_sums.zero_()
        while run.batch_start < n_train and run.step < run.total_steps:
            tick = time.perf_counter()
            _train_step(run, run.perm[run.batch_start : run.batch_start + bs])
            run.batch_start += bs
            if run.step % LOG_EVERY == 0 or run.step == run.total_steps:
                _log_window(run)
            run.epoch_train_s += time.perf_counter() - tick
            if stop.signum is not None:
                _save_checkpoint(run)
                raise runs.Interrupted(stop.signum, run.step, run.run_dir)
            if every and run.step % every == 0:
                _save_checkpoint(run)
        _end_epoch(run)
        _save_checkpoint(run)
    run.bar.close()
    _finish(run)


def _set_up(run: Run) -> None:
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
    run.generator = torch.Generator(device=run.device).manual_seed(cfg.seed)
    run.window = torch.zeros(3, device=run.device)
    run.target_ring, run.target_hit = target.new_state(run.device)
    run.epoch_sums = torch.zeros(3, device=run.device)
    run.summary["transfer"] = transfer.describe(cfg, run.model)
    run.summary.update(
        params=sum(p.numel() for p in run.model.parameters()),
        num_classes=run.data.num_classes,  # chance accuracy 1/C: a diverged job's score (scores.py)
        target_train_error=cfg.trainer.target_train_error,
        steps_to_target=None,
        seconds_to_target=None,
        metrics={},
    )


def _start(run: Run) -> None:
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
    log.info(
        "%s | %d params | %d train examples | initial loss %.4f (ln %d = %.4f)",
        run.device, run.summary["params"], len(run.data.train_x), run.summary["initial_loss"],
        run.data.num_classes, math.log(run.data.num_classes),
    )  # fmt: skip
    run.summary["diagnostics"] = _set_up_diagnostics(run)
    for line in run.summary["diagnostics"]:
        log.warning(line)
    _open_bar(run)
    run.model.train()


def _set_up_diagnostics(run: Run) -> list[str]:
    """Before training: Xavier on a ReLU-family activation; an initial loss far from ln C."""
    return diagnostics.init_meets_activation(run.cfg) + diagnostics.initial_loss(
        run.summary["initial_loss"], run.data.num_classes
    )


def _resume(run: Run, state: dict[str, Any]) -> None:
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
    run.bar = tqdm(
        total=run.total_steps, initial=run.step, desc="train", unit="step", dynamic_ncols=True,
        disable=_progress_disabled(run.cfg.trainer.progress),
    )  # fmt: skip


def _train_step(run: Run, idx: torch.Tensor) -> None:
    """One optimiser step on the batch `idx`; its loss and accuracy are summed on the device."""
    cfg, monitor, step = run.cfg, run.monitor, run.step
    x = run.preprocess(run.augment(run.data.train_x[idx], run.generator))  # (B, *in_shape)
    y = run.data.train_y[idx]
    with monitor.capture(step) if monitor else nullcontext():
        logits = run.model(x)
    loss = F.cross_entropy(logits, y)
    objective = loss
    if cfg.regularizer.l1 > 0:
        objective = loss + cfg.regularizer.l1 * build.l1_penalty(run.decay_weights)
    run.optimizer.zero_grad(set_to_none=True)
    objective.backward()
    if monitor:
        monitor.after_backward(step)
    run.optimizer.step()
    if monitor:
        monitor.after_step(step)
    run.lr = run.optimizer.param_groups[0]["lr"]  # the lr this step used
    run.scheduler.step()
    if run.averaged is not None:
        run.averaged.update(run.model, run.epoch)
    run.step += 1
    n = torch.full_like(loss.detach(), len(y))  # a device fill, not a host copy
    batch = torch.stack([loss.detach() * n, (logits.argmax(1) == y).sum(), n])
    run.window += batch
    run.epoch_sums += batch
    run.target_hit = target.update(
        run.target_ring, run.target_hit, run.step, batch[1], n, cfg.trainer.target_train_error
    )
    run.bar.update(1)


def _log_window(run: Run) -> None:
    """The curves since the last sync: history, TensorBoard, bar; raises Diverged on NaN/inf."""
    elapsed = run.elapsed()
    w_loss, w_correct, w_n, hit = target.pack(run.window, run.target_hit).tolist()  # one sync
    run.window.zero_()
    w_loss, w_acc = w_loss / w_n, w_correct / w_n
    if not math.isfinite(w_loss):
        _keep_statistics(run)  # what was captured before the blow-up is kept
        raise Diverged(run.step, w_loss)
    step = run.step
    log_curve(run.history, run.writer, step, w_loss, w_acc, run.lr, elapsed)
    reached = target.found(hit, run.last_sync, step, elapsed)
    run.last_sync = (step, elapsed)
    if run.summary["steps_to_target"] is None and reached:
        run.summary.update(steps_to_target=reached[0], seconds_to_target=reached[1])
    run.bar.set_postfix(loss=f"{w_loss:.3f}", acc=f"{w_acc:.3f}", refresh=False)


def log_curve(history: dict, writer, step: int, w_loss: float, w_acc: float, lr: float,
              elapsed: float) -> None:  # fmt: skip
    """One synced window of the training curve, into history.json and TensorBoard."""
    history["steps"].append(
        {"step": step, "train_loss": w_loss, "train_acc": w_acc, "lr": lr, "time_s": elapsed}
    )
    writer.add_scalar("train/loss", w_loss, step)
    writer.add_scalar("train/acc", w_acc, step)
    writer.add_scalar("lr", lr, step)


def _end_epoch(run: Run) -> None:
    """Validation, the epoch's curves, best-so-far; the next batch starts a new epoch."""
    cfg, step = run.cfg, run.step
    run.train_time_s += run.epoch_train_s
    e_loss, e_correct, e_n = run.epoch_sums.tolist()
    val_loss, val_acc = evaluate(
        run.model, run.preprocess, run.data.val_x, run.data.val_y, cfg.trainer.eval_batch_size
    )
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
    log.info(
        "epoch %d | step %d | train loss %.4f acc %.4f | val loss %.4f acc %.4f | %.0f ex/s",
        run.epoch, step, e_loss / e_n, e_correct / e_n, val_loss, val_acc, examples_per_s,
    )  # fmt: skip
    run.perm, run.batch_start, run.epoch_train_s = None, 0, 0.0


def _save_checkpoint(run: Run, finished: bool = False) -> None:
    """Atomically, and never of a blown-up model: the last checkpoint is before any NaN."""
    if not run.cfg.trainer.checkpoint:
        return
    if not finished:
        loss = run.epoch_sums[0].item() + run.window[0].item()
        if not math.isfinite(loss):
            _keep_statistics(run)
            raise Diverged(run.step, loss)
    checkpoint.save(run.run_dir / "checkpoint.pt", checkpoint.gather(run, finished=finished))
    write_json(run.run_dir / "history.json", run.history)


def _keep_statistics(run: Run) -> None:
    run.summary["diagnostics"] = _set_up_diagnostics(run)
    if run.monitor:
        run.summary["metrics"].update(run.monitor.summary_metrics())
        run.summary["diagnostics"] += run.monitor.diagnostics()


def _finish(run: Run) -> None:
    """Train and test metrics once at the end, diagnostics, the final files."""
    cfg, data, step = run.cfg, run.data, run.step
    bs = cfg.trainer.eval_batch_size
    train_loss, train_acc = evaluate(run.model, run.preprocess, data.train_x, data.train_y, bs)
    test_loss, test_acc = evaluate(run.model, run.preprocess, data.test_x, data.test_y, bs)
    run.writer.add_scalar("test/acc", test_acc, step)
    run.writer.add_scalar("test/loss", test_loss, step)
    if cfg.trainer.predictions:  # for ensembles of a sweep's seeds (trainlab compare)
        ensembles.save_predictions(run.run_dir, run.model, run.preprocess, data, bs)
    last = run.history["epochs"][-1]
    run.summary.update(
        train_loss=train_loss,
        train_acc=train_acc,
        val_loss=last["val_loss"],
        val_acc=last["val_acc"],
        test_loss=test_loss,
        test_acc=test_acc,
        best_val_acc=run.best_val_acc if math.isfinite(run.best_val_acc) else None,
        steps=step,
        epochs=run.epoch,
        wall_time_s=run.elapsed(),
        examples_per_s=step * cfg.trainer.batch_size / max(run.train_time_s, 1e-9),
    )
    if run.averaged is not None:
        avg = run.averaged.final(run.preprocess, data, bs)
        run.summary.update(avg)
        run.summary.update(run.averaged.gains(run.summary))
        averaging.write_scalars(run.writer, {k: avg[k] for k in avg if k.startswith("test_")}, step)
    run.summary["metrics"]["unit_max_diff"] = initializers.unit_max_difference(run.model)
    run.summary["metrics"].update(
        bn_modes.batch_stats_metrics(run.model, run.preprocess, data.val_x, data.val_y,
                                     cfg.trainer.batch_size, run.summary["val_acc"])
    )  # fmt: skip
    _keep_statistics(run)
    for line in run.summary.get("diagnostics", []):
        log.warning(line)
    write_json(run.run_dir / "history.json", run.history)
    _save_checkpoint(run, finished=True)
    log.info(
        "done: test acc %.4f | val acc %.4f | %d steps in %.1f s",
        test_acc, run.summary["val_acc"], step, run.summary["wall_time_s"],
    )  # fmt: skip


def _close(run: Run) -> None:
    """Writers and bars closed; a run that stopped early keeps its curves so far."""
    if run.bar is not None:
        run.bar.close()
    if run.writer is not None:
        run.writer.close(run.summary["status"])
    if run.summary["status"] in ("diverged", "interrupted", "failed") and run.history["steps"]:
        _write(run.run_dir / "history.json", run.history, quiet=True)


def _progress_disabled(mode: str) -> bool:
    return {"always": False, "never": True}.get(mode, not sys.stderr.isatty())
