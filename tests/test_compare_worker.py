"""The end-of-sweep compare runs in a worker started with the sweep (trainlab.compare_worker),
and in the sweep's own process wherever the worker cannot be used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf
from test_compare import history, make_job, summary

from trainlab import compare_worker
from trainlab.callbacks import CompareOnMultirunEnd

ROOT = Path(__file__).resolve().parents[1]


def test_a_sweep_compares_in_the_worker_and_prints_after_its_jobs(tmp_path):
    code = """
import sys
from trainlab.cli import main
try:
    main(["train", "-m", "seed=0,1", "trainer.max_steps=2", "trainer.progress=never",
          "stats.enabled=false", "threads=1", "hydra.launcher.n_jobs=1", "hydra.sweep.dir=sweep"])
finally:
    print("SWEEP PROCESS", sorted(m for m in ("matplotlib", "jinja2") if m in sys.modules))
"""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "SWEEP PROCESS []" in proc.stdout, proc.stdout  # the plots were drawn elsewhere
    assert proc.stdout.index("Ranked by mean val_acc") < proc.stdout.index("SWEEP PROCESS")
    for name in ("comparison.md", "report.html", "plots/curves_val_acc.png"):
        assert (tmp_path / "sweep" / name).is_file(), name


def test_without_a_usable_worker_the_sweep_compares_itself(tmp_path, capsys):
    for seed, v in enumerate([0.9, 0.92]):
        make_job(tmp_path, [f"seed={seed}"], summary(v), history([v]))
    gone = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE, text=True)
    gone.wait()
    assert compare_worker.start() is None  # pytest captures stdout: no file for a worker
    not_ready = subprocess.Popen(  # a worker that could not import or draw: BROKEN
        [sys.executable, "-c", f"import sys; sys.stdin.readline(); sys.exit({compare_worker.BROKEN})"],
        stdin=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert compare_worker.run(not_ready, str(tmp_path)) is None
    callback = CompareOnMultirunEnd()
    callback.worker = gone
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert "Ranked by mean val_acc" in capsys.readouterr().out
    assert (tmp_path / "comparison.md").is_file()
