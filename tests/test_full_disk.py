"""A full disk for real (a small tmpfs mounted for the test) under a run and under compare, and
compares run at the same time: one line naming the error, exit 2, no corrupt or half-written
file, nothing already written lost."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_sweeps import trainlab

pytestmark = pytest.mark.slow

QUIET = ["data.subset=64", "trainer.epochs=1", "trainer.progress=never", "stats.enabled=false"]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: room for a small sweep, not for a big model's checkpoint."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def contents(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` and its bytes, but the logs (a run appends to its log) and
    compare's TensorBoard runs (their event files are named by time and pid: see tb_runs)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix != ".log" and "_compare" not in p.parts
    }


def tb_runs(sweep: Path) -> dict[str, int]:
    """compare's TensorBoard runs: group -> number of event files (one: whole, not doubled)."""
    return {
        p.name: len(list(p.glob("events.out.tfevents.*"))) for p in (sweep / "_compare").iterdir()
    }


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def fill(disk: Path) -> None:
    with (disk / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_a_full_disk_loses_nothing_and_says_so_in_one_line(disk: Path, tmp_path: Path) -> None:
    sweep = disk / "sweep"
    first = trainlab(["train", "-m", *QUIET, "model.width=8", "activation=relu,tanh",
                      f"hydra.sweep.dir={sweep}"], tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    before = contents(sweep)
    assert "comparison.md" in before and any(k.startswith("plots/") for k in before)

    # two compares at once, a few times: neither crashes, and one whole report stays
    for _ in range(3):
        procs = [
            subprocess.Popen([sys.executable, "-m", "trainlab", "compare", str(sweep)],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]  # fmt: skip
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert contents(sweep).keys() == before.keys()  # no stray temporary file, nothing missing
    assert tb_runs(sweep) == {"activation=relu": 1, "activation=tanh": 1}
    assert [p.name for p in sweep.iterdir() if p.name.startswith(".")] == []

    # a run whose checkpoint (Adam, a 1024-wide MLP: about 13 MB) does not fit
    run_dir = disk / "run"
    run = trainlab(["train", *QUIET, "model.width=1024", f"hydra.run.dir={run_dir}"], tmp_path)
    assert run.returncode == 2
    line = one_line(run.stderr)
    assert line.startswith("trainlab: error: cannot write") and "No space left on device" in line
    ckpt = run_dir / "checkpoint.pt"
    assert not ckpt.exists() or "model" in torch.load(ckpt, weights_only=True)
    assert not [p.name for p in run_dir.glob(".*.tmp")]  # no half-written temporary left

    # compare with the disk full: one line, exit 2, the last report whole
    report, runs = contents(sweep), sorted((sweep / "_compare").rglob("*"))
    fill(disk)
    full = trainlab(["compare", str(sweep)], tmp_path)
    assert full.returncode == 2
    line = one_line(full.stderr)
    assert line.startswith("trainlab compare: cannot write") and "No space left" in line, line
    assert contents(sweep) == report and sorted((sweep / "_compare").rglob("*")) == runs
