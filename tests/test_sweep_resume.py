"""Idempotent, collision-free sweeps, for real in subprocesses: a re-run skips finished jobs and
resumes the rest, a different sweep into the directory is refused, sweeps started at once get
their own directories, and a killed sweep's compare accounts for every job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sweeps import job_dirs, summary, trainlab

TINY = ["data.subset=64", "trainer.epochs=1", "model.width=8", "trainer.progress=never"]


def files(folder: Path) -> dict[str, int]:
    """Every file but the log (a re-run appends "skipped" to it) and its modification time."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and p.suffix != ".log"
    }


@pytest.mark.slow  # ~21 s: three real sweeps
def test_rerun_skips_finished_jobs_and_a_different_sweep_is_refused(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = ["train", "-m", *TINY, "activation=relu,tanh", f"hydra.sweep.dir={sweep_dir}"]
    assert trainlab(args, tmp_path).returncode == 0
    jobs = job_dirs(sweep_dir)
    before = {name: files(job) for name, job in jobs.items()}
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert len(record["jobs"]) == 2

    again = trainlab(args, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already finished") == 2
    assert {name: files(job) for name, job in job_dirs(sweep_dir).items()} == before

    other = trainlab([*args[:-2], "activation=relu,gelu", args[-1]], tmp_path)
    assert other.returncode == 2
    (line,) = other.stderr.strip().splitlines()
    assert "holds another sweep" in line and "hydra.sweep.dir" in line
    assert {name: files(job) for name, job in job_dirs(sweep_dir).items()} == before


def test_sweeps_started_at_once_get_their_own_directories(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "trainlab", "train", "-m", *TINY, "activation=relu"]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        proc.communicate(timeout=300)
        assert proc.returncode == 0
    sweeps = sorted((tmp_path / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 2  # the same second or not: one directory each
    for sweep_dir in sweeps:
        (job,) = job_dirs(sweep_dir).values()
        assert summary(job)["status"] == "completed"
        assert len(list(job.glob("events.out.tfevents.*"))) == 1


@pytest.mark.slow  # ~31 s: a killed sweep and its re-run
def test_killed_sweep_accounts_for_every_job_and_a_rerun_finishes_it(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = ["train", "-m", *TINY, "trainer.epochs=40", "trainer.checkpoint_every=5",
            "activation=relu,tanh,gelu", "hydra.launcher.fuse=false",  # one job at a time
            f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainlab", *args], cwd=tmp_path, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # the second job has a checkpoint: kill the sweep
        started = [j for j in job_dirs(sweep_dir).values() if (j / "checkpoint.pt").exists()]
        if len(started) >= 2 and summary(sorted(started)[-1])["status"] == "running":
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)

    compare = trainlab(["compare", str(sweep_dir)], tmp_path)
    md = (sweep_dir / "comparison.md").read_text()
    assert "killed: its summary says running" in md, md
    assert "never started" in md
    assert compare.returncode != 0 or "missing" in compare.stdout

    rerun = trainlab(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resumed from" in rerun.stdout and "already finished" in rerun.stdout
    statuses = [summary(j)["status"] for j in job_dirs(sweep_dir).values()]
    assert statuses == ["completed"] * 3
    for job in job_dirs(sweep_dir).values():
        assert len(list(job.glob("events.out.tfevents.*"))) == 1
