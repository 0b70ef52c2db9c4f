"""Sweeps for real: `trainlab train -m` in subprocesses with the basic, joblib and submitit_local
launchers, compare on the result, failed and diverged jobs, and a real TensorBoard server.

Every subprocess runs in its own session and the whole process group is killed afterwards, so a
launcher's workers (loky, submitit) never outlive a test.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch

TINY = ["data.subset=64", "trainer.epochs=1", "model.width=8", "model.depth=1", "threads=1"]
AUTO_THREADS = [t for t in TINY if not t.startswith("threads=")]  # the launcher decides
GROUP = (
    "data.subset=64,model.depth=1,model.width=8,threads=1,trainer.epochs=1"  # the shared overrides
)
JOB_TAGS = {"train/loss", "train/acc", "val/acc", "val/loss", "lr", "test/acc"}
MEAN_TAGS = {f"{t}/{b}" for t in ("train/loss", "train/acc", "val/acc", "val/loss")
             for b in ("mean", "lower", "upper")}  # fmt: skip


def trainlab(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python -m trainlab ARGS` in a new session; its whole process group is killed after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainlab", *args], cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"trainlab {' '.join(args)} ran past {timeout} s\n{err[-3000:]}")
    finally:
        _kill_group(proc.pid)  # stragglers: loky workers, submitit jobs
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    done.pid = proc.pid  # the launcher's own process
    return done


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def sweep(
    tmp: Path, *overrides: str, timeout: float = 240
) -> tuple[Path, subprocess.CompletedProcess]:
    """The default launcher in one process (worker processes: tests/test_parallel_sweep.py)."""
    sweep_dir = tmp / "sweep"
    if not any(o.startswith("hydra/launcher=") for o in overrides):
        overrides = (*overrides, "hydra.launcher.n_jobs=1")
    proc = trainlab(["train", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"], tmp, timeout)
    return sweep_dir, proc


def job_dirs(sweep_dir: Path) -> dict[str, Path]:
    """Run name (path below the sweep dir) -> job directory, for every job that started."""
    return {
        str(p.parent.parent.relative_to(sweep_dir)): p.parent.parent
        for p in sweep_dir.rglob("overrides.yaml")
        if p.parent.name == ".hydra"
    }


def summary(job: Path) -> dict[str, Any]:
    return json.loads((job / "summary.json").read_text())


def running_job(sweep_dir: Path, seconds: float = 300) -> tuple[Path, dict[str, Any]]:
    """The first job of the sweep found running with a checkpoint: (directory, summary)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for job in job_dirs(sweep_dir).values():
            try:
                s = summary(job)
            except (OSError, ValueError):
                continue
            if s.get("status") == "running" and (job / "checkpoint.pt").exists():
                return job, s
        time.sleep(0.05)
    raise AssertionError(f"no job of {sweep_dir} ran within {seconds} s")


def event_pids(job: Path) -> set[int]:
    """The pid in each event file name (events.out.tfevents.TIME.HOST.PID.N): who trained it."""
    return {int(p.name.split(".")[-2]) for p in job.glob("events.out.tfevents.*")}


# ---------------------------------------------------------------- a basic sweep and compare


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """2 activations x 2 seeds, one process (Hydra's basic launcher)."""
    tmp = tmp_path_factory.mktemp("basic")
    return sweep(tmp, "activation=relu,tanh", "seed=0,1", *TINY)


def test_sweep_runs_every_job_and_compare_at_the_end(basic) -> None:
    sweep_dir, proc = basic
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_dirs(sweep_dir)
    assert sorted(jobs) == [
        f"activation={a},{GROUP}/seed={s}" for a in ("relu", "tanh") for s in (0, 1)
    ]
    assert all(summary(j)["status"] == "completed" for j in jobs.values())
    assert "4 jobs in 2 groups, 4 measured" in proc.stdout  # the callback printed the table
    for name in ("comparison.md", "comparison.csv", "claims.json"):
        assert (sweep_dir / name).stat().st_size > 0
    for name in ("curves_val_acc.png", "curves_train_loss.png"):
        assert (sweep_dir / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_groups_by_overrides_and_aggregates_seeds(basic) -> None:
    sweep_dir, _ = basic
    rows = {r["activation"]: r for r in csv.DictReader((sweep_dir / "comparison.csv").open())}
    assert sorted(rows) == ["relu", "tanh"]
    jobs = job_dirs(sweep_dir)
    for act, row in rows.items():
        assert row["group"] == f"activation={act}"  # only the swept key: the rest is shared
        assert (row["n"], row["failed"], row["diverged"], row["missing"]) == ("2", "0", "0", "0")
        vals = [summary(jobs[f"activation={act},{GROUP}/seed={s}"])["val_acc"] for s in (0, 1)]
        assert float(row["val_acc_mean"]) == pytest.approx(sum(vals) / 2)
        std = abs(vals[0] - vals[1]) / math.sqrt(2)  # sample std of two values
        assert float(row["val_acc_std"] or 0) == pytest.approx(std, abs=1e-12)
    md = (sweep_dir / "comparison.md").read_text()
    assert "| activation=relu | 2 |" in md and "| activation=tanh | 2 |" in md


def test_compare_cli_on_the_sweep(basic) -> None:
    sweep_dir, _ = basic
    before = (sweep_dir / "comparison.md").stat().st_mtime_ns
    proc = trainlab(["compare", str(sweep_dir)], sweep_dir.parent, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "4 jobs in 2 groups" in proc.stdout and "activation=tanh " in proc.stdout
    assert (sweep_dir / "comparison.md").stat().st_mtime_ns > before
    proc = trainlab(["compare", str(sweep_dir / "nope")], sweep_dir.parent, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


CLAIMS = """\
- text: relu ends at a higher val accuracy than tanh
  kind: compare
  metric: val_acc
  a: {activation: relu}
  op: higher
  b: {activation: tanh}
- text: relu's final training loss is below 10
  kind: threshold
  metric: train_loss
  where: {activation: relu}
  op: below
  value: 10
"""


def test_compare_judges_an_ad_hoc_sweep_with_a_claims_file(basic) -> None:
    """The README's example: claims written after the fact, on a sweep typed by hand."""
    sweep_dir, _ = basic
    (sweep_dir.parent / "claims.yaml").write_text(CLAIMS)
    proc = trainlab(["compare", str(sweep_dir), "--claims", "claims.yaml"], sweep_dir.parent, 120)
    assert proc.returncode == 0, proc.stderr
    claims = json.loads((sweep_dir / "claims.json").read_text())
    assert [c["text"] for c in claims] == [
        "relu ends at a higher val accuracy than tanh",
        "relu's final training loss is below 10",
    ]
    assert claims[1]["verdict"] == "confirmed", claims[1]["detail"]  # about 2.3 after 1 epoch
    assert claims[0]["numbers"][0]["test"]["method"] == "welch"
    assert "train_loss" in (sweep_dir / "comparison.md").read_text()  # a column: a claim uses it
    (sweep_dir.parent / "bad.yaml").write_text("- {kind: compare, metric: val_acc, op: sideways}")
    for bad in ("bad.yaml", "missing.yaml"):
        proc = trainlab(["compare", str(sweep_dir), "--claims", bad], sweep_dir.parent, 60)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert f"--claims={bad}" in proc.stderr


# ---------------------------------------------------------------- failed and diverged jobs


def test_failed_and_diverged_jobs_are_reported_and_the_rest_is_intact(tmp_path: Path) -> None:
    """lr 1e30 drives the loss to NaN (diverged, a result); p=1.5 fails validation (failed)."""
    sweep_dir, proc = sweep(
        tmp_path, "optimizer.lr=1e-3,1e30", "regularizer.p=0,1.5", "init=large_random",
        "seed=0", *TINY, "trainer.batch_size=16",
    )  # fmt: skip
    # cli._job: in a multirun a failing job is logged and the sweep goes on; compare (run by
    # the callback) reports every failed and diverged job with its reason, and the sweep exits
    # 1 because jobs failed (a diverged job is a result, not a failure).
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "2 of 4 jobs failed" in proc.stderr
    assert proc.stderr.count("trainlab: error: regularizer.p=1.5") == 2
    statuses = {name.split("/")[0]: summary(job) for name, job in job_dirs(sweep_dir).items()}
    fixed = ["init=large_random", *TINY, "trainer.batch_size=16"]
    key = ",".join(sorted([*fixed, "optimizer.lr={}", "regularizer.p={}"]))  # Hydra sorts keys
    ok, diverged = statuses[key.format("0.001", 0)], statuses[key.format("1e+30", 0)]
    assert ok["status"] == "completed" and 0 <= ok["val_acc"] <= 1 and ok["steps"] == 4
    assert diverged["status"] == "diverged" and diverged["diverged_at_step"] == 4
    for lr in ("0.001", "1e+30"):
        failed = statuses[key.format(lr, 1.5)]
        assert failed["status"] == "failed" and "regularizer.p=1.5" in failed["error"]
    ok_dir = job_dirs(sweep_dir)[key.format("0.001", 0) + "/seed=0"]
    assert (ok_dir / "history.json").is_file()

    rows = {r["group"]: r for r in csv.DictReader((sweep_dir / "comparison.csv").open())}
    counts = {g: (r["n"], r["diverged"], r["failed"]) for g, r in rows.items()}
    label = "optimizer.lr={},regularizer.p={}"  # only the swept keys: the rest is shared
    assert counts == {
        label.format("0.001", 0): ("1", "0", "0"),
        label.format("1e+30", 0): ("1", "1", "0"),  # a diverged job is measured
        label.format("0.001", 1.5): ("0", "0", "1"),
        label.format("1e+30", 1.5): ("0", "0", "1"),
    }
    assert float(rows[label.format("0.001", 0)]["val_acc_mean"]) == pytest.approx(ok["val_acc"])
    assert float(rows[label.format("1e+30", 0)]["val_acc_mean"]) == pytest.approx(0.1)  # chance
    md = (sweep_dir / "comparison.md").read_text()
    assert md.count("- failed: ") == 2 and "ConfigError: regularizer.p=1.5" in md
    assert re.search(r"- diverged: `[^`]*optimizer.lr=1e\+30[^`]*`: diverged at step 4", md)
    assert "Jobs that did not complete" in proc.stdout


# ---------------------------------------------------------------- parallel launchers


@pytest.mark.slow  # ~31 s: joblib workers
def test_joblib_runs_jobs_in_worker_processes_with_the_basic_launchers_numbers(
    tmp_path: Path,
) -> None:
    sweep_dir, proc = sweep(
        tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "activation=relu,tanh", "seed=0", *AUTO_THREADS,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_dirs(sweep_dir)
    assert len(jobs) == 2 and (sweep_dir / "comparison.md").is_file()
    (tmp_path / "basic").mkdir()  # one of the jobs under Hydra's basic launcher, in one process
    basic_dir, one = sweep(tmp_path / "basic", "hydra/launcher=basic", "activation=relu", "seed=0",
                           *AUTO_THREADS)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    (twin,) = job_dirs(basic_dir).values()
    for job in jobs.values():
        s = summary(job)
        assert s["status"] == "completed"
        assert s["threads"] == 1  # tasks.threads_per_job: every launcher's default
        pids = event_pids(job)
        assert len(pids) == 1 and proc.pid not in pids  # trained in a loky worker, not the launcher
    # the same job under the basic launcher: the same thread count, bitwise the same weights
    assert summary(twin)["threads"] == 1
    ours = torch.load(jobs[str(twin.relative_to(basic_dir))] / "checkpoint.pt", weights_only=True)
    theirs = torch.load(twin / "checkpoint.pt", weights_only=True)
    assert ours["model"].keys() == theirs["model"].keys()
    assert all(torch.equal(v, theirs["model"][k]) for k, v in ours["model"].items())


@pytest.mark.slow  # ~22 s: submitit processes
def test_submitit_local_runs_jobs_as_processes(tmp_path: Path) -> None:
    sweep_dir, proc = sweep(
        tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=2",
        "activation=relu,tanh", "seed=0", *TINY,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_dirs(sweep_dir)
    assert sorted(jobs) == [f"activation={a},{GROUP}/seed=0" for a in ("relu", "tanh")]
    pids = set()
    for job in jobs.values():
        assert summary(job)["status"] == "completed"
        pids |= event_pids(job)
    assert len(pids) == 2 and proc.pid not in pids  # one submitit process per job
    assert list((sweep_dir / ".submitit").rglob("*_result.pkl"))  # submitit's own records
    rows = list(csv.DictReader((sweep_dir / "comparison.csv").open()))
    assert sorted((r["activation"], r["n"]) for r in rows) == [("relu", "1"), ("tanh", "1")]


# ---------------------------------------------------------------- a real TensorBoard server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoard:
    """`tensorboard --logdir DIR` on 127.0.0.1 at a free port; JSON over its HTTP API."""

    def __init__(self, logdir: Path, timeout: float = 90) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logdir.parent / "tensorboard.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                 "--host", "127.0.0.1", "--port", str(self.port), "--reload_interval", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tensorboard exited: {self.log.read_text()[-2000:]}")
            try:
                if self.get("/data/runs"):  # answers, and has loaded the runs
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"tensorboard did not answer in {timeout} s: {self.log.read_text()[-2000:]}"
        )

    def get(self, path: str, **query: str) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp)

    def post(self, path: str, body: dict) -> Any:
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def close(self) -> None:
        _kill_group(self.proc.pid)
        self.proc.wait(timeout=10)


@pytest.fixture
def tensorboard(basic):
    sweep_dir, proc = basic
    assert proc.returncode == 0, proc.stderr[-3000:]
    server = TensorBoard(sweep_dir)
    try:
        yield server
    finally:
        server.close()


def _until(fetch, ok, timeout: float = 30):
    """fetch() until ok(result) (TensorBoard loads event files in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if ok(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_tensorboard_lists_every_run_and_its_scalars(basic, tensorboard: TensorBoard) -> None:
    sweep_dir, _ = basic
    jobs = job_dirs(sweep_dir)
    groups = {"activation=relu", "activation=tanh"}  # compare's labels: the swept keys only
    means = {f"_compare/{g}" for g in groups}  # one run per group
    runs = _until(lambda: tensorboard.get("/data/runs"), lambda r: set(jobs) | means <= set(r))
    assert set(runs) == set(jobs) | means and len(runs) == len(set(runs))  # no collisions
    for name in jobs:  # readable: the overrides, then the seed last
        assert re.fullmatch(r"activation=(relu|tanh)," + re.escape(GROUP) + r"/seed=[01]", name)

    tags = _until(lambda: tensorboard.get("/data/plugin/scalars/tags"),
                  lambda t: all(JOB_TAGS <= set(t.get(r, {})) for r in jobs))  # fmt: skip
    for run in runs:
        assert (JOB_TAGS if run in jobs else MEAN_TAGS) <= set(tags[run]), run
    for run, job in jobs.items():
        points = tensorboard.get("/data/plugin/scalars/scalars", run=run, tag="val/acc")
        ((_, step, value),) = points  # one epoch: [wall_time, step, value]
        s = summary(job)
        assert step == s["steps"] and value == pytest.approx(s["val_acc"], abs=1e-6)
        assert tensorboard.get("/data/plugin/scalars/scalars", run=run, tag="train/loss")
    for g in groups:
        mean = tensorboard.get(
            "/data/plugin/scalars/scalars", run=f"_compare/{g}", tag="val/acc/mean"
        )
        accs = [summary(jobs[f"{g},{GROUP}/seed={s}"])["val_acc"] for s in (0, 1)]
        assert mean[-1][2] == pytest.approx(sum(accs) / 2, abs=1e-6)


def test_tensorboard_hparams_same_keys_in_every_job_and_no_seed(basic, tensorboard) -> None:
    sweep_dir, _ = basic
    jobs = job_dirs(sweep_dir)
    experiment = tensorboard.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    names = [h["name"] for h in experiment["hparamInfos"]]
    assert {"activation", "optimizer", "model.width", "trainer.epochs"} <= set(names)
    assert "seed" not in names and "optimizer.lr" not in names  # the sweep did not set it
    body = {
        "experimentName": "", "startIndex": 0, "sliceSize": 100,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"hparam": n} for n in names] + [{"metric": m["name"]} for m in experiment["metricInfos"]],
    }  # fmt: skip
    groups = tensorboard.post("/data/plugin/hparams/session_groups", body)["sessionGroups"]
    sessions = {s["name"]: g["hparams"] for g in groups for s in g["sessions"]}
    assert set(sessions) == set(jobs)  # one session per job, in the job's own run
    keys = {frozenset(h) for h in sessions.values()}
    assert len(keys) == 1 and "seed" not in next(iter(keys))
    for run, hp in sessions.items():
        assert hp["activation"] == run.split(",")[0].split("=")[1]
        assert hp["model.width"] == 8
    differs = {h["name"] for h in experiment["hparamInfos"] if h.get("differs")}
    assert differs == {"activation"} and names[0] == "activation"  # shown first
    # the seeds of one configuration are one session group
    assert sorted(len(g["sessions"]) for g in groups) == [2, 2]
    assert {g["hparams"]["activation"] for g in groups} == {"relu", "tanh"}


def test_jobs_differing_only_in_a_run_setting_get_their_own_runs(tmp_path: Path) -> None:
    sweep_dir, proc = sweep(tmp_path, "stats.enabled=true,false", "seed=0", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(job_dirs(sweep_dir)) == 2
