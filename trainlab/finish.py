"""The end of a run: final train and test metrics, averaged weights, the last files; writers
and bars closed however the run ended."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from trainlab import averaging, bn_modes, ensembles, initializers, loop, start, terminal
from trainlab.checkpoint import Run
from trainlab.io import write_json
from trainlab.start import evaluate

log = logging.getLogger("trainlab")


def finish(run: Run) -> None:
    """Train and test metrics once at the end, diagnostics, the final files."""
    cfg, data, step = run.cfg, run.data, run.step
    bs = cfg.trainer.eval_batch_size
    tick = time.perf_counter()
    train_loss, train_acc = evaluate(run.model, run.preprocess, data.train_x, data.train_y, bs)
    test_probs = [] if cfg.trainer.predictions else None
    test_loss, test_acc = evaluate(run.model, run.preprocess, data.test_x, data.test_y, bs,
                                   probs=test_probs)  # fmt: skip
    run.writer.add_scalar("test/acc", test_acc, step)
    run.writer.add_scalar("test/loss", test_loss, step)
    if cfg.trainer.predictions:  # for ensembles of a sweep's seeds (trainlab compare)
        known = {"test": test_probs, "val": run.val_probs}  # the last validation's, if it ran
        ensembles.save_predictions(run.run_dir, run.model, run.preprocess, data, bs, known)
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
    run.eval_time_s += time.perf_counter() - tick
    run.summary.update(train_time_s=run.train_time_s, eval_time_s=run.eval_time_s)
    shown = set(start.set_up_diagnostics(run))  # logged when the run started
    loop.keep_statistics(run)
    for line in run.summary.get("diagnostics", []):
        if line not in shown:
            log.log(terminal.run_level(logging.WARNING), line)
    write_json(run.run_dir / "history.json", run.history)
    loop.save_checkpoint(run, finished=True)
    log.debug(  # the job's result line (trainlab.terminal) says it with the run directory
        "done: test acc %.4f | val acc %.4f | %d steps in %.1f s",
        test_acc, run.summary["val_acc"], step, run.summary["wall_time_s"],
    )  # fmt: skip


def close(run: Run) -> None:
    """Writers and bars closed; a run that stopped early keeps its curves so far."""
    if run.bar is not None:
        run.bar.close()
    if run.writer is not None:
        run.writer.close(run.summary["status"])
    if run.summary["status"] in ("diverged", "interrupted", "failed") and run.history["steps"]:
        write_quiet(run.run_dir / "history.json", run.history, quiet=True)


def write_quiet(path: Path, obj: Any, quiet: bool) -> None:
    """A record written on the way out; when an error is already on its way (a full disk),
    failing to write is logged rather than raised over it."""
    try:
        write_json(path, obj)
    except OSError as err:
        if not quiet:
            raise
        log.error("%s not written: %s", path.name, err)
