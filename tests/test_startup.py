"""Start-up cost: a run imports only what its options need (issue 11), for real, in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainlab.data import digits_file, load_data

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torchvision", "sklearn", "matplotlib", "scipy", "pandas", "sympy")


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_a_digits_run_imports_no_torchvision_sklearn_matplotlib_or_dynamo(model, tmp_path):
    code = f"""
import sys
from trainlab.cli import main
try:
    main(["train", "model={model}", "trainer.max_steps=2", "hydra.run.dir=run"])
finally:
    from trainlab import lazy_dynamo
    print("HEAVY", sorted(m for m in {HEAVY!r} if m in sys.modules))
    print("DYNAMO", lazy_dynamo.real_loaded())
"""
    proc = python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout
    assert "DYNAMO False" in proc.stdout, proc.stdout
    assert (tmp_path / "run" / "summary.json").is_file()
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_compiled_code_gets_the_real_dynamo_after_the_stand_in(tmp_path):
    """torch.compile (and its submodule imports) after an optimizer step: torch's behaviour."""
    code = """
import torch
from trainlab import lazy_dynamo
lazy_dynamo.install()
m = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(m.parameters(), lr=0.1)
m(torch.ones(3, 4)).sum().backward(); opt.step(); opt.zero_grad()
assert not lazy_dynamo.real_loaded()
f = torch.compile(lambda x: (2 * x).sin(), backend="eager")
assert torch.allclose(f(torch.ones(3)), torch.ones(3).mul(2).sin())
assert lazy_dynamo.real_loaded() and torch._dynamo.disable is not None
m(torch.ones(3, 4)).sum().backward(); opt.step(); print("OK")
"""
    proc = python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


def test_digits_read_from_the_csv_equal_sklearns_load_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    assert digits_file().is_file()
    cfg = type("C", (), dict(name="digits", val_fraction=0.0, test_fraction=0.2, subset=None,
                             split_seed=0))  # fmt: skip
    data = load_data(cfg)
    images = torch.cat([data.train_x, data.test_x]).squeeze(1).numpy() * 16  # (N, 8, 8)
    labels = torch.cat([data.train_y, data.test_y]).numpy()
    order = np.lexsort(images.reshape(len(images), -1).T[::-1])
    expected = np.lexsort(digits.images.reshape(len(images), -1).T[::-1])
    np.testing.assert_array_equal(images[order], digits.images[expected])
    np.testing.assert_array_equal(labels[order], digits.target[expected])


def test_jobs_of_one_process_share_a_loaded_data_set_keyed_by_its_config():
    from trainlab.config import compose

    first = load_data(compose(["seed=0"]).data)
    assert load_data(compose(["seed=1", "activation=tanh"]).data) is first  # same data node
    other = load_data(compose(["data.subset=100"]).data)
    assert other is not first and len(other.train_x) == 100


def test_a_compare_without_claims_imports_no_scipy_nor_torch(tmp_path):
    """The ranking table's t intervals come from verdict's table (scipy only for claims), and
    the TensorBoard runs are written with tensorboard's own writer (no torch)."""
    code = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(ROOT / "tests")!r})
from test_compare import history, make_job, summary
from trainlab.compare import Comparison, ensembles, evaluate_claims
from trainlab.report.tables import format_markdown
from trainlab.sweep import group_jobs, load_sweep, rank_groups
for act, vals in {{"relu": [0.9, 0.92, 0.94], "tanh": [0.8, 0.83, 0.81]}}.items():
    for seed, v in enumerate(vals):
        make_job(Path("sweep"), [f"activation={{act}}", f"seed={{seed}}"], summary(v), history([v]))
jobs, experiment = load_sweep(Path("sweep"))
groups = rank_groups(group_jobs(jobs), "val_acc", True)
ensembles.annotate(groups)
result = Comparison(Path("sweep"), groups, experiment, "val_acc", True, evaluate_claims([], groups))
print("TABLE", "0.920 ± 0.020 [95% 0.870, 0.970]" in format_markdown(result))
from trainlab.report.tensorboard import write_tensorboard
print("RUNS", len(write_tensorboard(result, Path("sweep/_compare"))))
print("SCIPY", sorted(m for m in sys.modules if m.startswith(("scipy", "torch"))))
"""
    proc = python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "TABLE True" in proc.stdout and "RUNS 2" in proc.stdout, proc.stdout
    assert "SCIPY []" in proc.stdout, proc.stdout
