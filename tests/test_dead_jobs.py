"""A SIGKILLed job under every launcher trainlab ships or documents: the sweep ends with compare
accounting for every job (completed, killed, interrupted, never started), and re-running the
sweep command finishes it. The pool launcher's own test is tests/test_pool_launcher.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_sweeps import job_dirs, running_job, summary, trainlab

pytestmark = pytest.mark.slow

TINY = ["data.subset=256", "model.width=8", "trainer.progress=never", "trainer.checkpoint_every=5"]
JOBS = "activation=relu,tanh,gelu"


def start(tmp_path: Path, *launcher: str) -> tuple[list[str], subprocess.Popen]:
    args = ["train", "-m", *TINY, "trainer.epochs=40", JOBS, *launcher,
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainlab", *args], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    return args, proc


def kill_a_running_job(sweep_dir: Path) -> Path:
    """SIGKILL the process of the first job found running with a checkpoint; its directory."""
    job, running = running_job(sweep_dir)
    os.kill(running["pid"], signal.SIGKILL)
    return job


def accounted(sweep_dir: Path) -> list[str]:
    """One line per job of the sweep in comparison.md that did not complete."""
    md = (sweep_dir / "comparison.md").read_text()
    return [line for line in md.splitlines() if line.startswith("- missing: ")]


def finish(args: list[str], tmp_path: Path) -> None:
    again = trainlab(args, tmp_path, 400)
    assert again.returncode == 0, again.stderr[-3000:]
    statuses = [summary(job)["status"] for job in job_dirs(tmp_path / "sweep").values()]
    assert statuses == ["completed"] * 3


@pytest.mark.parametrize("launcher", ["submitit_local", "joblib"])
def test_a_killed_job_ends_the_sweep_with_compare(launcher: str, tmp_path: Path) -> None:
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    args, proc = start(tmp_path, f"hydra/launcher={launcher}", *extra)
    victim = kill_a_running_job(tmp_path / "sweep")
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 1, err[-3000:]  # compare ran and says a job did not finish
    assert "Traceback" not in err, err[-3000:]
    assert "jobs failed (see" in err
    lines = accounted(tmp_path / "sweep")
    assert any(victim.parent.name in line and "killed" in line for line in lines), lines
    if launcher == "submitit_local":  # the others went on and finished
        assert "the other jobs go on" in out + err
        assert len(lines) == 1
    else:  # joblib stopped the others: each reported, none lost
        assert "a joblib worker died" in out + err
        done = sum(
            summary(j)["status"] == "completed" for j in job_dirs(tmp_path / "sweep").values()
        )
        assert len(lines) + done == 3, lines
    finish(args, tmp_path)


def test_basic_launcher_a_killed_sweep_is_compared_and_finished(tmp_path: Path) -> None:
    """The basic launcher runs every job in the sweep's own process: killing the job kills the
    sweep; `trainlab compare` accounts for every job, and the re-run finishes it."""
    args, proc = start(tmp_path, "hydra/launcher=basic")
    kill_a_running_job(tmp_path / "sweep")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    compared = trainlab(["compare", str(tmp_path / "sweep")], tmp_path)
    assert compared.returncode == 1, compared.stderr[-2000:]
    lines = accounted(tmp_path / "sweep")
    assert any("killed" in line for line in lines) and len(lines) == 3 - sum(
        summary(j)["status"] == "completed" for j in job_dirs(tmp_path / "sweep").values()
    )
    assert sum("never started" in line for line in lines) >= 1  # from sweep.json
    finish(args, tmp_path)
