"""A sweep through `hydra/launcher=submitit_slurm` on a real one-node Slurm cluster (started by
the fixture, tests/slurm_cluster.py): every job runs as a Slurm job, a job cancelled with
`scancel` is reported by compare and the sweep goes on to compare; re-running the sweep command
skips the finished jobs and resumes the cancelled one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import cluster, missing
from test_sweeps import job_dirs, running_job, summary

pytestmark = pytest.mark.slow

TINY = ["data.subset=256", "model.width=8", "trainer.progress=never", "trainer.checkpoint_every=5"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    why = missing()
    if why:
        pytest.skip(why)
    with cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env


def slurm_states(env: dict[str, str], ids: list[str]) -> dict[str, str]:
    """Job id -> state, as the controller records it (sacct's query, answered by scontrol)."""
    args = [a for i in {i.split("_")[0] for i in ids} for a in ("-j", i)]
    out = subprocess.run(["sacct", "-o", "JobID,State,NodeList", "--parsable2", *args], env=env,
                         capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return dict(line.split("|")[:2] for line in out.stdout.splitlines()[1:])


def test_a_slurm_sweep_survives_scancel_and_a_rerun_finishes_it(
    slurm: dict[str, str], tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    args = [sys.executable, "-m", "trainlab", "train", "-m", *TINY, "trainer.epochs=30",
            "activation=relu,tanh,gelu", "hydra/launcher=submitit_slurm",
            "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=tmp_path, env=slurm, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    _, running = running_job(sweep_dir)
    victim = running["slurm_job_id"]  # the Slurm job running this job
    subprocess.run(["scancel", victim], env=slurm, check=True, timeout=30)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err[-3000:]  # one job did not finish: the sweep says so
    assert "CANCELLED" in out + err and "the other jobs go on" in out + err, out[-3000:]
    jobs = job_dirs(sweep_dir)
    summaries = {name: summary(job) for name, job in jobs.items()}
    assert len(summaries) == 3
    by_id = {s["slurm_job_id"]: s for s in summaries.values()}
    assert len(by_id) == 3  # three Slurm jobs
    assert by_id[victim]["status"] in ("interrupted", "running")  # SIGTERM, or SIGKILL after it
    assert sorted(s["status"] for s in summaries.values()).count("completed") == 2
    md = (sweep_dir / "comparison.md").read_text()
    assert "interrupted by SIGTERM" in md or "killed: its summary says running" in md
    states = slurm_states(slurm, list(by_id))
    assert states[victim] == "CANCELLED"
    assert all(states[i] == "COMPLETED" for i in by_id if i != victim), states

    again = subprocess.run(args, cwd=tmp_path, env=slurm, text=True, capture_output=True,
                           timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    logs = {name: (job / "train.log").read_text() for name, job in job_dirs(sweep_dir).items()}
    assert sum("already finished" in log for log in logs.values()) == 2
    assert sum(f"resumed from {sweep_dir}" in log for log in logs.values()) == 1
    finished = {name: summary(job) for name, job in job_dirs(sweep_dir).items()}
    assert all(s["status"] == "completed" for s in finished.values())
    resumed = next(s for s in finished.values() if s["choices"] == by_id[victim]["choices"])
    assert resumed["slurm_job_id"] != victim  # a new Slurm job finished it
    assert slurm_states(slurm, [resumed["slurm_job_id"]])[resumed["slurm_job_id"]] == "COMPLETED"
