"""A fused run that is stopped resumes each member separately from its own checkpoint, in the
standard format, and ends where the uninterrupted separate runs end (issue 11)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import torch

from trainlab import checkpoint, runs
from trainlab.config import compose
from trainlab.fused import train_fused
from trainlab.train import train

RUN = ["trainer.progress=never", "threads=1", "data.subset=256", "model.width=32",
       "trainer.epochs=10", "trainer.checkpoint_every=2", "stats.every=4"]  # fmt: skip


def interrupt_after_first_checkpoint(path) -> threading.Thread:
    """SIGINT to this process once `path` exists (the fused loop is running by then)."""

    def watch() -> None:
        deadline = time.monotonic() + 300
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_an_interrupted_fused_run_resumes_each_member_from_its_own_checkpoint(tmp_path):
    cfgs = [compose([*RUN, f"seed={s}"]) for s in (0, 1)]
    dirs = [tmp_path / "fused" / str(c.seed) for c in cfgs]
    watcher = interrupt_after_first_checkpoint(dirs[1] / "checkpoint.pt")
    with pytest.raises(runs.Interrupted):
        train_fused(cfgs, dirs)
    watcher.join()
    for d in dirs:
        summary = json.loads((d / "summary.json").read_text())
        assert summary["status"] == "interrupted"
        state = torch.load(d / "checkpoint.pt", weights_only=True)
        assert (
            state["format"] == checkpoint.FORMAT
            and not state["finished"]
            and 2 <= state["step"] < 40
        )  # of 10 x 4
    resumed = [train(c, d) for c, d in zip(cfgs, dirs, strict=True)]  # a re-run: one by one
    separate = [train(c, tmp_path / "separate" / str(c.seed)) for c in cfgs]
    for r, s, d in zip(resumed, separate, dirs, strict=True):
        assert r["status"] == s["status"] == "completed" and r["steps"] == s["steps"]
        assert r["test_acc"] == pytest.approx(s["test_acc"], abs=0.01)
        assert r["metrics"].keys() == s["metrics"].keys()
        steps = [e["step"] for e in json.loads((d / "history.json").read_text())["steps"]]
        assert steps == list(range(10, s["steps"] + 1, 10))  # on where the fused run stopped
    for seed in (0, 1):
        f, s = (torch.load(tmp_path / k / str(seed) / "checkpoint.pt", weights_only=True)["model"]
                for k in ("fused", "separate"))  # fmt: skip
        for name in f:
            torch.testing.assert_close(f[name], s[name], atol=1e-4, rtol=1e-3)
