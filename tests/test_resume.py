"""Exact resume: a run killed anywhere and restarted ends bit for bit where an uninterrupted one
does; SIGINT/SIGTERM stop with one line and a resumable checkpoint; a diverged run keeps its
curves and the checkpoint before the blow-up; a finished run is skipped, another config refused.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from trainlab import runs, tb
from trainlab.config import compose
from trainlab.errors import ConfigError
from trainlab.target import WINDOW
from trainlab.train import train

# dropout (global RNG), augmentation (the generator), warmup + cosine (scheduler state),
# statistics every 25 steps, checkpoints every 7 steps, the EMA of the weights: everything
# resume must restore
RUN = [
    "threads=1", "device=cpu", "trainer.epochs=3", "trainer.batch_size=16", "model.width=256",
    "model.depth=3", "regularizer=dropout", "regularizer.p=0.2", "augmentation=crop",
    "scheduler=cosine", "scheduler.warmup_steps=20", "stats.every=25",
    "trainer.checkpoint_every=7", "trainer.progress=never", "trainer.ema_decay=0.9",
]  # fmt: skip


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trainlab", "train", "-v", *RUN, *extra, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def wait_for_training(proc: subprocess.Popen, timeout: float = 120) -> str:
    """Read the run's log until training starts (the initial-loss line, printed with -v, or resumed)."""
    deadline, seen = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "initial loss" in line or "resumed from" in line or not line:
            return seen
    pytest.fail(f"no training started in {timeout} s: {seen}")


def new_checkpoint(path: Path, proc: subprocess.Popen, timeout: float = 60) -> bool:
    """Wait until this process has written a checkpoint (False if it ended first)."""
    before = path.stat().st_mtime_ns if path.exists() else None
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime_ns != before:
            return True
        time.sleep(0.01)
    return False


def steps(history: dict) -> list[tuple]:
    """The step curve without wall times."""
    return [(h["step"], h["train_loss"], h["train_acc"], h["lr"]) for h in history["steps"]]


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    (events_file,) = run_dir.glob("events.out.tfevents.*")  # one file, resumed or not
    return [
        e.step
        for e in tb.read_events(events_file.read_bytes())
        for v in e.summary.value
        if v.tag == tag
    ]


@pytest.mark.slow  # ~22 s: several killed and resumed runs (CI's second pass runs it)
def test_killed_run_resumes_bitwise_identical(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert train(compose(RUN), reference)["status"] == "completed"

    run_dir, rng, kills, resumed_at = tmp_path / "killed", random.Random(0), 0, []
    for _ in range(8):
        proc = start(run_dir)
        if "resumed from" in (seen := wait_for_training(proc)):
            resumed_at.append(int(seen.split(" at step ")[1].split()[0]))
        if kills < 3 and new_checkpoint(run_dir / "checkpoint.pt", proc):
            time.sleep(rng.uniform(0.0, 0.3))  # a random point, after a checkpoint of this try
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
        proc.communicate(timeout=300)
        if json.loads((run_dir / "summary.json").read_text())["status"] == "completed":
            break
    assert kills >= 2, "the run finished before it could be killed: make RUN longer"
    assert len(set(resumed_at)) >= 2 and min(resumed_at) > 0, resumed_at  # mid-run, each time
    print("killed", kills, "times; resumed at steps", resumed_at)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"

    ours = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    ref = torch.load(reference / "checkpoint.pt", weights_only=True)
    assert ours["finished"] and ours["step"] == ref["step"]
    assert ours["model"].keys() == ref["model"].keys()
    for key, value in ref["model"].items():
        assert torch.equal(ours["model"][key], value), key
    history = json.loads((run_dir / "history.json").read_text())
    ref_history = json.loads((reference / "history.json").read_text())
    assert steps(history) == steps(ref_history)  # each step once, the same numbers
    assert [h["step"] for h in history["epochs"]] == [h["step"] for h in ref_history["epochs"]]
    summary = json.loads((run_dir / "summary.json").read_text())
    ref_summary = json.loads((reference / "summary.json").read_text())
    for key in ("test_acc", "val_acc", "train_loss", "steps_to_target", "initial_loss",
                "test_acc_ema", "val_loss_ema", "best_val_acc_ema"):  # fmt: skip
        assert summary[key] == ref_summary[key], key
    assert summary["metrics"] == ref_summary["metrics"]  # the statistics' snapshots restored
    assert scalar_steps(run_dir, "train/loss") == scalar_steps(reference, "train/loss")
    assert scalar_steps(run_dir, "val/acc") == scalar_steps(reference, "val/acc")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_with_one_line_and_a_resumable_checkpoint(tmp_path: Path, sig) -> None:
    proc = start(tmp_path, "trainer.epochs=200")
    wait_for_training(proc)
    time.sleep(0.5)
    os.killpg(proc.pid, sig)  # the whole group, as a terminal's Ctrl-C or a scheduler does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    (line,) = err.strip().splitlines()
    assert line.startswith(f"trainlab: interrupted by {sig.name} at step ") and "resume" in line
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert not state["finished"] and state["step"] == int(line.split("at step ")[1].split(";")[0])
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["steps"] and history["steps"][-1]["step"] <= state["step"]


def test_diverged_run_keeps_its_history_and_the_checkpoint_before(tmp_path: Path) -> None:
    cfg = compose(
        [
            "optimizer=sgd",
            "optimizer.lr=3",
            "scheduler.warmup_steps=40",
            "trainer.epochs=4",
            "trainer.checkpoint_every=1",
            "data.subset=256",
            "trainer.batch_size=16",
            "trainer.progress=never",
            "threads=1",
        ]
    )  # fmt: skip (the warmup raises the lr until the loss blows up, at step 23 here)
    summary = train(cfg, tmp_path)
    assert summary["status"] == "diverged", summary
    history = json.loads((tmp_path / "history.json").read_text())
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert 0 < state["step"] < summary["diverged_at_step"]
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert history["steps"] and all(math.isfinite(h["train_loss"]) for h in history["steps"])
    assert train(cfg, tmp_path)["status"] == "diverged"  # a result: not re-run


def test_finished_run_is_skipped_and_another_config_refused(tmp_path: Path) -> None:
    tiny = ["data.subset=64", "trainer.epochs=1", "model.width=8", "trainer.progress=never"]
    first = train(compose(tiny), tmp_path)
    files = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert train(compose(tiny), tmp_path) == first  # the same config: skipped
    with pytest.raises(ConfigError, match="holds a run of another configuration"):
        train(compose([*tiny, "seed=1"]), tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == files


def interrupt_once_written(path: Path) -> None:
    """SIGINT to this process once `path` exists (the run is training by then)."""
    deadline = time.monotonic() + 120
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(os.getpid(), signal.SIGINT)


def as_format3(state: dict) -> dict:
    """A checkpoint as trainlab wrote it before the tally (format 3: sums on the device)."""
    tally, step = state.pop("tally"), state["step"]
    ring = torch.zeros(WINDOW, 2)
    for i, (correct, n) in enumerate(tally["ring"][0]):
        ring[(step - len(tally["ring"][0]) + 1 + i) % WINDOW] = torch.tensor([correct, n])
    state.update(format=3, window=torch.tensor(tally["window"][0]), target_ring=ring,
                 epoch_sums=torch.tensor(tally["epoch"][0]),
                 target_hit=torch.tensor(float(tally["hit"][0])))  # fmt: skip
    return state


def test_a_format_3_checkpoint_resumes(tmp_path: Path) -> None:
    """A run stopped by an older trainlab resumes where it stopped and ends where it would."""
    cfg = compose(["threads=1", "model.width=32", "trainer.epochs=2", "trainer.checkpoint_every=0",
                   "trainer.progress=never", "trainer.target_train_error=0.6"])  # fmt: skip
    reference = train(cfg, tmp_path / "reference")
    run_dir = tmp_path / "old"
    watcher = threading.Thread(target=interrupt_once_written, args=(run_dir / "checkpoint.pt",))
    watcher.start()
    with pytest.raises(runs.Interrupted):
        train(cfg, run_dir)
    watcher.join()
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert 0 < reference["steps_to_target"] - state["step"] < WINDOW  # the ring carries over
    torch.save(as_format3(state), run_dir / "checkpoint.pt")
    resumed = train(cfg, run_dir)
    assert resumed["status"] == "completed" and resumed["steps"] == reference["steps"]
    for key in ("test_acc", "steps_to_target"):
        assert resumed[key] == reference[key], key
    curve, ref_curve = (steps(json.loads((d / "history.json").read_text()))
                        for d in (run_dir, tmp_path / "reference"))  # fmt: skip
    assert [c[0] for c in curve] == [c[0] for c in ref_curve]
    assert [c[1] for c in curve] == pytest.approx([c[1] for c in ref_curve], rel=1e-6)


@pytest.mark.parametrize("fused", [False, True])
def test_a_signal_during_the_final_evaluation_completes_the_run_then_stops(fused, tmp_path,
                                                                            monkeypatch):  # fmt: skip
    """SIGTERM while the run computes its final metrics: the run is complete and recorded so,
    and the signal still stops the caller (a sweep does not go on to its next job)."""
    from trainlab import finish, fused_records
    from trainlab.fused import train_fused

    module, name = (fused_records, "finish") if fused else (finish, "finish")
    original = getattr(module, name)

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # caught by the run's handler: a flag
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, signalled)
    if fused:
        monkeypatch.setattr("trainlab.fused.finish", signalled)
    cfgs = [compose(["trainer.max_steps=3", "trainer.progress=never", f"seed={s}"]) for s in (0, 1)]
    with pytest.raises(runs.Interrupted, match="SIGTERM came as the run finished"):
        if fused:
            train_fused(cfgs, [tmp_path / "0", tmp_path / "1"])
        else:
            train(cfgs[0], tmp_path / "0")
    for run_dir in [tmp_path / "0", tmp_path / "1"][: 2 if fused else 1]:
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["steps"] == 3
