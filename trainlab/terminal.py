"""What trainlab shows in a terminal (README, "The terminal").

By default: a run's progress bar (transient: it leaves nothing behind), its warnings, and one
result line ending with its run directory; in a sweep, one line per finished job (`[k/N]`, its
overrides, status, headline metric, time) and compare's compact tables. `-v` (Hydra's
`hydra.job_logging.handlers.console.level=DEBUG`) adds the per-epoch lines, each run's set-up
line and, in a sweep, every run's warnings. The job's .log file always holds everything.

Log lines go above the progress bar (tqdm.write), never into it; in a sweep whose jobs run in
parallel (`hydra.launcher.n_jobs` > 1) every line is tagged with its job (`[job 3]`) and no
bar is drawn (several processes would draw over each other).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

log = logging.getLogger("trainlab")


def _hydra() -> Any:
    """Hydra's config of the running job, None outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def in_sweep() -> bool:
    hc = _hydra()
    return hc is not None and str(hc.mode) == "RunMode.MULTIRUN"


def parallel() -> bool:
    """Whether this sweep's jobs run at the same time (joblib, pool: n_jobs > 1)."""
    if not in_sweep():
        return False
    n_jobs = _hydra().launcher.get("n_jobs")
    return n_jobs is not None and n_jobs != 1


def job_tag() -> str:
    """'[job 3] ' in a parallel sweep's job, else ''."""
    if not parallel():
        return ""
    num = _hydra().job.get("num")
    return "" if num is None else f"[job {num}] "


def run_level(level: int) -> int:
    """A run's own warnings: shown in a single run; in a sweep the job's line counts them and
    -v shows them (they are in the job's .log file and summary.json either way)."""
    return logging.DEBUG if in_sweep() else level


def tag(text: str) -> str:
    """Every line of `text` tagged with the job (a parallel sweep), e.g. an error line."""
    prefix = job_tag()
    return "\n".join(prefix + line for line in text.split("\n")) if prefix else text


def tag_warnings() -> None:
    """In a parallel sweep's job, Python's warnings go through logging (the `py.warnings`
    logger): tagged with the job on the console, and kept in the job's .log file."""
    if parallel():
        logging.captureWarnings(True)


class ConsoleHandler(logging.StreamHandler):
    """The job's console handler (conf/hydra/job_logging/trainlab.yaml): each line is written
    above the progress bars, which tqdm redraws below it, and tagged with its job."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if parallel():  # no bar to redraw; one write per line: processes share the stream
                self.stream.write(tag(self.format(record)) + "\n")
            else:
                tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def progress_bar(total: int, initial: int, mode: str) -> tqdm:
    """A run's bar on stderr: transient (leave=False), shown on a terminal unless
    trainer.progress=never; never in a parallel sweep (trainer.progress=always forces it)."""
    disable = {"always": False, "never": True}.get(mode, not sys.stderr.isatty() or parallel())
    return tqdm(total=total, initial=initial, desc=_bar_label(), unit="step", leave=False,
                dynamic_ncols=True, disable=disable)  # fmt: skip


def _bar_label() -> str:
    """'train' in a single run; in a sweep the job's number and directory (40 characters)."""
    hc = _hydra()
    if hc is None or not in_sweep():
        return "train"
    return f"#{hc.job.get('num', '?')} {str(hc.sweep.subdir)[:40]}"


# ---------------------------------------------------------------- a job's line


def sweep_total(config: Any) -> str:
    """How many jobs the sweep runs: sweep.json's list, an Optuna sweep's n_trials, else '?'."""
    from trainlab.sweep_record import read_record

    record = read_record(Path(str(config.hydra.sweep.dir))) or {}
    if record.get("jobs"):
        return str(len(record["jobs"]))
    trials = config.hydra.sweeper.get("n_trials")
    return str(trials) if trials else "?"


def count_finished(sweep_dir: Path, name: str) -> int:
    """Append this job to the sweep's list of finished jobs and return its length; a lock
    makes the count exact when jobs end at the same time in several processes."""
    import fcntl

    path = sweep_dir / ".finished"
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(name + "\n")
        fh.flush()
        fh.seek(0)
        count = sum(1 for line in fh if line.strip())
        fcntl.flock(fh, fcntl.LOCK_UN)
    return count


def result_line(config: Any, job_return: Any, seconds: float) -> str:
    """One line for a finished training job: status, headline metric, time; a single run's
    ends with its directory, a sweep job's starts with the sweep's count and the job's
    directory below the sweep (its overrides, then its seed)."""
    import json

    run_dir = Path(str(config.hydra.runtime.output_dir))
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    status = summary.get("status") or ("failed" if str(job_return.status) != "JobStatus.COMPLETED"
                                       else "no summary")  # fmt: skip
    metric = str((config.get("experiment") or {}).get("rank_by") or "val_acc")
    sweep = in_sweep()
    parts = [status]
    for key in dict.fromkeys([metric] if sweep else [metric, "test_acc"]):
        if isinstance(summary.get(key), (int, float)):
            parts.append(f"{key} {summary[key]:.4g}")
    if summary.get("steps") and not sweep:
        parts.append(f"{summary['steps']} steps")
    parts.append(f"{seconds:.1f} s")
    if not sweep:
        return " | ".join([*parts, str(run_dir)])
    warnings = len(summary.get("diagnostics") or [])
    if warnings:  # the lines: -v, or the job's .log file
        parts.append(f"{warnings} warning{'s' * (warnings != 1)}")
    name = str(config.hydra.sweep.subdir)  # the job's directory: its overrides and seed
    done = count_finished(Path(str(config.hydra.sweep.dir)), name)
    head, tail = f"[{done}/{sweep_total(config)}] ", " | " + " | ".join(parts)
    room = LINE - len(job_tag()) - len(head) - len(tail)  # a parallel job's tag: `[job 3] `
    return head + short_name(name, room) + tail


LINE = 100 - len("[12:00:00][trainlab] ")  # a job's line, its logging prefix included


def short_name(name: str, room: int) -> str:
    """A job's directory as its line shows it: keys by their last part where that tells them
    apart, long numbers to 4 significant digits, cut (…) to `room` characters; the directory
    itself keeps its name (comparison.md lists it)."""
    parts = [short_keys(part, digits=4) for part in name.split("/")]
    text = "/".join(parts)
    return text if len(text) <= room else text[: max(room, 20) - 1] + "…"


def short_keys(config: str, digits: int | None = None) -> str:
    """'optimizer.lr=0.1,regularizer.weight_decay=1e-4' -> 'lr=0.1,weight_decay=1e-4' when
    the keys' last parts tell them apart; with `digits`, numbers to that many significant
    digits ('0.0031622776' -> '0.003162')."""
    cells = [c.split("=", 1) for c in config.split(",")]
    if any(len(c) != 2 for c in cells):
        return config
    short = [k.rsplit(".", 1)[-1] for k, _ in cells]
    keys = short if len(set(short)) == len(short) else [k for k, _ in cells]
    return ",".join(f"{k}={_num(v, digits)}" for k, (_, v) in zip(keys, cells, strict=True))


def _num(value: str, digits: int | None) -> str:
    if digits is None or len(value) <= digits + 2:
        return value
    try:
        return f"{float(value):.{digits}g}"
    except ValueError:
        return value


def quiet_third_party(config: Any) -> None:
    """Optuna's own handler writes coloured (ANSI) lines at INFO: warnings only, through
    Hydra's plain handlers. Called before the sweeper is built."""
    if "optuna" not in str(config.hydra.sweeper.get("_target_", "")):
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def verbose() -> bool:
    hc = _hydra()
    if hc is None:
        return False
    level = hc.job_logging.get("handlers", {}).get("console", {}).get("level", "INFO")
    return str(level).upper() == "DEBUG"
