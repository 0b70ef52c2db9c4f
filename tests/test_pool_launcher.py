"""trainlab's pool launcher: a SIGKILLed job is reported as killed, the others finish, compare
runs at the end and accounts for every job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_sweeps import job_dirs, running_job, summary

TINY = ["data.subset=64", "model.width=8", "trainer.progress=never"]


@pytest.mark.slow  # ~18 s: with the other launchers' kill tests (tests/test_dead_jobs.py)
def test_a_killed_job_takes_no_other_with_it(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = ["train", "-m", *TINY, "trainer.epochs=60", "activation=relu,tanh,gelu",
            "hydra/launcher=pool", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainlab", *args], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    _, running = running_job(sweep_dir, 240)
    os.kill(running["pid"], signal.SIGKILL)  # the job's own process, not the launcher
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 1, err[-2000:]  # a job did not finish: the sweep says so
    assert "killed by SIGKILL; the other jobs go on" in out + err
    statuses = {name: summary(job)["status"] for name, job in job_dirs(sweep_dir).items()}
    assert sorted(statuses.values()) == ["completed", "completed", "running"], statuses
    md = (sweep_dir / "comparison.md").read_text()
    assert "killed: its summary says running" in md
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert len(record["jobs"]) == 3
