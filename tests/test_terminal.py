"""What a user sees: one result line per run (its directory last), per-epoch lines only with
-v (always in the job's .log), a parallel sweep's job lines tagged and counted, and compare's
compact view within 100 columns. Real runs on a 64-image subset of digits."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from trainlab.claims import ClaimResult
from trainlab.report.terminal import WIDTH, claim_table, fit_table
from trainlab.terminal import short_keys, short_name

TINY = ["data.subset=64", "trainer.epochs=2", "model.width=8", "model.depth=1"]
ANSI = re.compile(r"\x1b\[")


def trainlab(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "trainlab", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def test_one_result_line_per_run_and_epochs_only_with_verbose(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = trainlab(tmp_path, "train", *TINY, f"hydra.run.dir={run}")
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, lines
    assert re.match(r"^\[\d\d:\d\d:\d\d\]\[trainlab\] completed \| val_acc [\d.]+ \|", lines[0])
    assert lines[0].endswith(f"| {run}")
    log = (run / "train.log").read_text()
    assert "epoch 2 | step" in log and not ANSI.search(log)  # the file keeps every line
    verbose = trainlab(tmp_path, "train", "-v", *TINY, f"hydra.run.dir={tmp_path / 'v'}")
    assert sum("] epoch " in line for line in verbose.stdout.splitlines()) == 2


@pytest.mark.slow  # ~20 s: a pool sweep with two workers
def test_parallel_jobs_are_tagged_and_counted(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = trainlab(tmp_path, "train", "-m", *TINY, "activation=relu,tanh",
                    "hydra/launcher=pool", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}")  # fmt: skip
    jobs = [line for line in proc.stdout.splitlines() if "[trainlab]" in line]
    assert len(jobs) == 2, proc.stdout
    assert all(re.match(r"^\[job [01]\] \[\d\d:\d\d:\d\d\]\[trainlab\] \[[12]/2\] activation=", j)
               for j in jobs), jobs  # fmt: skip
    assert sorted(re.search(r"\[(\d)/2\]", j).group(1) for j in jobs) == ["1", "2"]
    assert f"sweep of 2 jobs into {sweep}" in proc.stdout
    rest = [
        ln for ln in proc.stdout.splitlines() if "[trainlab]" not in ln and str(sweep) not in ln
    ]
    assert rest and max(len(line) for line in rest) <= WIDTH  # compare's view
    assert not any(ANSI.search(p.read_text()) for p in sweep.rglob("*.log"))
    assert not (sweep / ".finished").exists()  # the [k/N] count is gone with the sweep


def test_compact_tables_fit_the_width() -> None:
    header = ["rank", "group", "n", *(f"metric_{i}" for i in range(12))]
    rows = [["1", "x=" + "y" * 80, "5", *("0.951 ± 0.012" for _ in range(12))]]
    lines = fit_table(header, rows)
    assert max(len(line) for line in lines) <= WIDTH
    assert "(in comparison.md also: metric_" in "\n".join(lines) and "metric_11)" in lines[-1]
    claims = [ClaimResult("a claim " * 30, "refuted", "detail " * 100,
                          [{"verdict": "confirmed"}, {"verdict": "refuted"}])]  # fmt: skip
    table = claim_table(claims)
    assert max(len(line) for line in table) <= WIDTH
    assert table[2].startswith("REFUTED  1/2 confirmed  a claim")


def test_a_job_line_names_its_job_in_the_width_left() -> None:
    optuna = "optimizer.lr=0.0031622776601683794,regularizer.weight_decay=2.1544346900318823e-05"
    assert short_name(f"{optuna}/seed=3", 80) == "lr=0.003162,weight_decay=2.154e-05/seed=3"
    clash = "model.width=8,data.width=16"  # last parts alike: the keys stay whole
    assert short_name(clash, 80) == clash
    cut = short_name("activation=relu,init=kaiming_normal,norm=batch,optimizer=adam/seed=0", 30)
    assert len(cut) == 30 and cut.endswith("…")
    assert short_keys("a.b=1,c=x") == "b=1,c=x" and short_keys("no_equals") == "no_equals"


def test_a_parallel_jobs_python_warnings_are_tagged(capsys) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from trainlab.terminal import ConsoleHandler, tag_warnings

    hydra = {"mode": RunMode.MULTIRUN, "launcher": {"n_jobs": 2}, "job": {"num": 3}}
    HydraConfig.instance().cfg = OmegaConf.create({"hydra": hydra})  # a parallel job's
    handler = ConsoleHandler(sys.stderr)
    logging.getLogger("py.warnings").addHandler(handler)
    try:
        tag_warnings()
        warnings.warn("a library's warning", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        logging.getLogger("py.warnings").removeHandler(handler)
        HydraConfig.instance().cfg = None
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "a library's" in ln]
    assert any("UserWarning: a library's warning" in ln for ln in lines)
    assert all(ln.startswith("[job 3] ") for ln in lines), lines  # its source line too
