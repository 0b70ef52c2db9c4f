"""The fused launcher's worker processes (`hydra.launcher.n_jobs`): the same results as one
process, returns in the sweep's order, a killed worker loses only its own unit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_sweeps import event_pids, job_dirs, running_job, summary, trainlab

from trainlab.cli import conf_dir
from trainlab.errors import ConfigError
from trainlab.preflight import preflight
from trainlab.sweep_fusion import work_units
from trainlab.sweep_pool import resolve_n_jobs

TINY = ["data.subset=128", "trainer.epochs=1", "model.width=8", "trainer.progress=never",
        "threads=1"]  # fmt: skip


def test_units_are_groups_biggest_first_halved_while_that_ends_the_sweep_sooner():
    assert work_units(30, {0: list(range(30))}, 2) == [list(range(0, 30, 2)), list(range(1, 30, 2))]
    four = {i: list(range(i, i + 8)) for i in range(0, 32, 8)}
    assert work_units(32, four, 2) == list(four.values())  # 16 jobs a worker already
    assert work_units(5, {1: [1, 3]}, 2) == [[1, 3], [0], [2], [4]]
    assert work_units(3, {}, 4) == [[0], [1], [2]]
    assert work_units(12, {0: list(range(12))}, 1) == [list(range(12))]


def test_preflight_tells_whether_the_jobs_run_in_workers():
    """When they do, the sweep's process starts the workers' fork server at once and does not
    import torch itself (trainlab.hydra_app.run): the two imports run on two cores."""
    conf = conf_dir()
    two = len(os.sched_getaffinity(0)) >= 2
    assert preflight(["-m", "seed=0,1", "threads=1"], conf) == ("FusedLauncher", two)
    assert preflight(["-m", "seed=0,1"], conf) == ("FusedLauncher", False)  # auto: 1 (no threads)
    assert preflight(["-m", "seed=0,1", "hydra/launcher=pool"], conf) == ("PoolLauncher", True)
    assert preflight(["seed=1"], conf) is None  # one run


def test_n_jobs_auto_is_one_process_per_thread_budget_and_bad_values_are_refused():
    cores = len(os.sched_getaffinity(0))
    assert resolve_n_jobs("auto", 1) == cores
    assert resolve_n_jobs("auto", None) == 1  # threads not set: in this process, as before
    assert resolve_n_jobs("auto", 2 * cores) == 1
    assert resolve_n_jobs(3, None) == 3 and resolve_n_jobs(-1, 4) == cores
    for bad in (0, -2, "many", True):
        with pytest.raises(ConfigError, match="hydra.launcher.n_jobs="):
            resolve_n_jobs(bad, 1)


def sweep(root: Path, n_jobs: int, *args: str) -> tuple[Path, subprocess.CompletedProcess]:
    sweep_dir = root / f"n{n_jobs}"
    proc = trainlab(["train", "-m", *TINY, *args, f"hydra.launcher.n_jobs={n_jobs}",
                     f"hydra.sweep.dir={sweep_dir}"], root, 300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir, proc


@pytest.mark.slow  # two sweeps, ~25 s
def test_two_workers_give_the_one_process_results(tmp_path: Path):
    args = ["model.width=8,16", "optimizer.lr=0.01,0.1", "seed=0,1"]  # 2 groups of 4
    one, _ = sweep(tmp_path, 1, *args)
    two, proc = sweep(tmp_path, 2, *args)
    jobs = job_dirs(one)
    assert sorted(jobs) == sorted(job_dirs(two)) and len(jobs) == 8
    pids = set()
    for name, job in jobs.items():
        ours, theirs = summary(job_dirs(two)[name]), summary(job)
        assert ours["status"] == theirs["status"] == "completed"
        assert ours["metrics"] == theirs["metrics"]  # same seeds, same groups: bit for bit
        assert ours["fused"]["members"] == theirs["fused"]["members"] == 4
        pids |= event_pids(job_dirs(two)[name])
    assert len(pids) == 2 and proc.pid not in pids  # one process per group
    lines = [line for line in proc.stdout.splitlines() if "| completed |" in line]
    assert len(lines) == 8 and all(line.startswith("[job ") for line in lines)
    assert all(len(line) <= 100 for line in lines)  # the tag fits in the job's line
    assert len(json.loads((two / "sweep.json").read_text())["jobs"]) == 8
    assert "never started" not in (two / "comparison.md").read_text()


@pytest.mark.slow  # an Optuna batch of 4 in 2 workers, ~15 s
def test_a_sweeper_gets_each_jobs_objective_in_its_order(tmp_path: Path):
    """Optuna pairs the returns with its trials by position: its best trial is the job with
    the best objective (the group of 4 lrs is halved between the workers)."""
    sweep_dir, _ = sweep(tmp_path, 2, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4",
                         "hydra.sweeper.n_jobs=4", "hydra.sweeper.direction=maximize",
                         "hydra.sweeper.sampler.seed=0",
                         "optimizer.lr=tag(log,interval(0.0001,1.0))")  # fmt: skip
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    values = {}
    for job in job_dirs(sweep_dir).values():
        lr = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["optimizer"]["lr"]
        values[lr] = summary(job)["best_val_acc"]
    assert len(values) == 4 and len(set(values.values())) > 1
    assert values[best["best_params"]["optimizer.lr"]] == best["best_value"] == max(values.values())


@pytest.mark.slow  # ~30 s: a unit killed halfway
def test_a_killed_worker_loses_only_its_unit(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    args = ["train", "-m", *TINY, "trainer.epochs=300", "model.width=8,16", "seed=0,1",
            "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "trainlab", *args], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    victim, running = running_job(sweep_dir, 240)
    os.kill(running["pid"], signal.SIGKILL)  # a worker, not the sweep
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 1, err[-2000:]  # jobs did not finish: the sweep says so
    assert out.count("killed by SIGKILL; the other jobs go on") == 2  # its group's two jobs
    statuses = {name: summary(job)["status"] for name, job in job_dirs(sweep_dir).items()}
    done = [name for name, status in statuses.items() if status == "completed"]
    assert len(done) == 2 and len({name.split("/")[0] for name in done}) == 1, statuses
    assert victim.parent.name not in {name.split("/")[0] for name in done}  # the other unit
    assert "killed: its summary says running" in (sweep_dir / "comparison.md").read_text()


@pytest.mark.slow  # ~40 s: a sweep stopped, then resumed
def test_sigterm_stops_every_worker_at_a_checkpoint_and_the_sweep_resumes(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    args = ["train", "-m", *TINY, "trainer.epochs=100", "model.width=8,16", "seed=0,1",
            "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "trainlab", *args], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 240
    while len({job.parent for job in sweep_dir.glob("*/seed=*") if (job / "checkpoint.pt").exists()
               and summary(job)["status"] == "running"}) < 2:  # fmt: skip
        assert time.monotonic() < deadline, "the two units did not both start"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # the sweep's process only: it passes the signal on
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.count("sweep interrupted by SIGTERM") == 1 and "Traceback" not in err
    statuses = [summary(job)["status"] for job in sweep_dir.glob("*/seed=*")]
    assert statuses == ["interrupted"] * 4  # both units, every member checkpointed
    again = trainlab(args, tmp_path, 300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in again.stdout
    assert [summary(job)["status"] for job in job_dirs(sweep_dir).values()] == ["completed"] * 4
