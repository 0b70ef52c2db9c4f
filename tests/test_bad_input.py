"""Every bad input is one line: exit 2, the key named, no traceback, nothing written and a
completed run beside it untouched. Most cases run the CLI in-process (they fail in the
pre-flight check, before Hydra creates anything); the few that need the data or the run's
length run as real subprocesses.
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import pytest
from test_data import small_idx_set, write_idx_set

from trainlab.cli import main, run_name
from trainlab.config import compose
from trainlab.train import train

TINY = ["data.subset=64", "trainer.epochs=1", "model.width=8", "trainer.progress=never"]
# (overrides, the key the one line must name)
CASES = [
    ("scheduler=step scheduler.main.gamma=-1", "scheduler.main.gamma"),
    ("scheduler=step scheduler.main.gamma=0", "scheduler.main.gamma"),
    ("scheduler=step scheduler.main.every=0", "scheduler.main.every"),
    ("scheduler=step scheduler.main.every=1.5", "scheduler.main.every"),
    ("scheduler=cosine scheduler.main.eta_min=-1", "scheduler.main.eta_min"),
    ("scheduler=linear scheduler.main.end_factor=2", "scheduler.main.end_factor"),
    ("scheduler=inverse_sqrt scheduler.main.timescale=0", "scheduler.main.timescale"),
    ("scheduler.warmup_steps=5 scheduler.warmup_start_factor=0", "scheduler.warmup_start_factor"),
    ("scheduler.warmup_start_factor=1.5", "scheduler.warmup_start_factor"),
    ("scheduler.warmup_steps=-1", "scheduler.warmup_steps"),
    ("scheduler=nosuch", "scheduler"),
    ("optimizer.lr=inf", "optimizer.lr"),
    ("optimizer.lr=nan", "optimizer.lr"),
    ("optimizer.lr=-0.1", "optimizer.lr"),
    ("optimizer.lr=0", "optimizer.lr"),
    ("optimizer.lr=abc", "optimizer.lr"),
    ("optimizer=momentum optimizer.momentum=-1", "optimizer.momentum"),
    ("optimizer.betas=[0.9]", "optimizer.betas"),
    ("optimizer.betas=[0.9,1.5]", "optimizer.betas"),
    ("optimizer.eps=-1", "optimizer.eps"),
    ("optimizer=rmsprop optimizer.alpha=-0.5", "optimizer.alpha"),
    ("optimizer=adagrad optimizer.lr_decay=-1", "optimizer.lr_decay"),
    ("+optimizer.foo=1", "foo"),
    ("optimizer=adamx", "optimizer"),
    ("+foo=1", "foo"),
    ("foo=1", "foo"),
    ("+trainer.foo=1", "trainer.foo"),
    ("trainer.epochs=abc", "trainer.epochs"),
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.epochs=1.5", "trainer.epochs"),
    ("trainer.epochs=[1", "trainer.epochs"),
    ("trainer.batch_size=0", "trainer.batch_size"),
    ("trainer.batch_size=-3", "trainer.batch_size"),
    ("trainer.eval_batch_size=0", "trainer.eval_batch_size"),
    ("trainer.max_steps=0", "trainer.max_steps"),
    ("trainer.checkpoint_every=-1", "trainer.checkpoint_every"),
    ("trainer.progress=sometimes", "trainer.progress"),
    ("trainer.target_train_error=1", "trainer.target_train_error"),
    ("trainer.checkpoint=maybe", "trainer.checkpoint"),
    ("data.val_fraction=0", "data.val_fraction"),
    ("data.val_fraction=1", "data.val_fraction"),
    ("data.test_fraction=0", "data.test_fraction"),
    ("data.subset=0", "data.subset"),
    ("data=nosuch", "data"),
    ("model=mlp_schema", "model"),
    ("model=cnn_schema", "model"),
    ("model.depth=0", "model.depth"),
    ("model.width=-1", "model.width"),
    ("model.width=abc", "model.width"),
    ("model=cnn model.stages=0", "model.stages"),
    ("model=cnn model.head_width=-1", "model.head_width"),
    ("+model.foo=1", "model.foo"),
    ("activation=nosuch", "activation"),
    ("+activation.layer.foo=1", "foo"),
    ("activation=leaky_relu activation.layer.negative_slope=abc", "abc"),
    ("init=nosuch", "init"),
    ("init.weight.mode=fan_middle", "init.weight"),
    ("norm=nosuch", "norm"),
    ("regularizer.p=1.5", "regularizer.p"),
    ("regularizer.p=-0.1", "regularizer.p"),
    ("regularizer.weight_decay=-1", "regularizer.weight_decay"),
    ("regularizer.weight_decay=inf", "regularizer.weight_decay"),
    ("regularizer.l1=-1", "regularizer.l1"),
    ("augmentation=nosuch", "augmentation"),
    ("augmentation=crop augmentation.ops.0.padding=-1", "augmentation.ops"),
    ("preprocess=nosuch", "preprocess"),
    ("+preprocess.foo=1", "preprocess.foo"),
    ("stats.max_batch=0", "stats.max_batch"),
    ("stats.every=0", "stats.every"),
    ("stats.histogram_every=0", "stats.histogram_every"),
    ("stats.enabled=perhaps", "stats.enabled"),
    ("device=tpu", "device"),
    ("threads=0", "threads"),
    ("seed=abc", "seed"),
    ("activation=relu,tanh", "activation"),  # a sweep without -m
    ("hydra.run.dir=/etc/hostname/run", "hydra.run.dir"),
    ("-m hydra/launcher=joblib hydra.launcher.n_jobs=0", "hydra.launcher.n_jobs"),
    ("-m activation=relu,nosuch", "activation"),
    ("-m trainer.epochs=1,abc", "trainer.epochs"),
]


@pytest.fixture(autouse=True)
def restore_logging():
    """Hydra configures the root logger when a run starts in-process; undo it after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """A completed run; every bad input beside it must leave it as it is."""
    root = tmp_path_factory.mktemp("bad_input")
    summary = train(compose(TINY), root / "done")
    assert summary["status"] == "completed"
    return root, snapshot(root / "done")


def test_the_battery_is_big_enough() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize(("overrides", "key"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(done, capsys, monkeypatch, overrides, key) -> None:
    root, before = done
    monkeypatch.chdir(root)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    args = overrides.split()
    where = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
    if not any(a.startswith(where) for a in args):
        args.append(f"{where}={root / 'bad'}")
    with pytest.raises(SystemExit) as exit_:
        main(["train", *TINY, *args])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith("trainlab: error: ") and key in line, line
    assert "Traceback" not in out + err
    assert not (root / "bad").exists()  # nothing created
    assert snapshot(root / "done") == before


def test_probe_bad_input_is_one_line(done, capsys, monkeypatch) -> None:
    root, _ = done
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit) as exit_:
        main(["probe", "model.depth=0", f"hydra.run.dir={root / 'bad'}"])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "model.depth=0" in line


def corrupt_sets(root: Path) -> dict[str, tuple[Path, str]]:
    """Fashion-MNIST folders with one broken file each: name -> (folder, the file's name)."""
    sets = {}
    for kind in ("truncated", "magic", "not_gzip"):
        folder = root / kind
        write_idx_set(folder, small_idx_set())
        broken = folder / "train-images-idx3-ubyte.gz"
        data = gzip.decompress(broken.read_bytes())
        if kind == "truncated":
            broken.write_bytes(gzip.compress(data[: len(data) // 2]))
        elif kind == "magic":
            broken.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + data[4:]))
        else:
            broken.write_bytes(b"not a gzip file at all")
        sets[kind] = (folder, broken.name)
    return sets


def test_bad_input_found_at_run_time_is_one_line(done, tmp_path, capsys, monkeypatch) -> None:
    """Corrupt data files name the file; a warmup longer than the run and batch norm on a
    batch of one example name the key."""
    root, before = done
    monkeypatch.chdir(root)
    cases = [(["scheduler.warmup_steps=1000"], "scheduler.warmup_steps"),
             (["norm=batch", "trainer.batch_size=1"], "trainer.batch_size")]  # fmt: skip
    for folder, name in corrupt_sets(tmp_path).values():
        cases.append((["data=fashion_mnist", f"data.root={folder}"], name))
    for i, (overrides, key) in enumerate(cases):
        with pytest.raises(SystemExit) as exit_:
            main(["train", *TINY, *overrides, f"hydra.run.dir={root / f'bad{i}'}"])
        out, err = capsys.readouterr()
        assert exit_.value.code == 2, err
        (line,) = err.strip().splitlines()
        assert key in line and "Traceback" not in out + err, line
    assert snapshot(root / "done") == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_read_only_output_folder_is_one_line(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(SystemExit) as exit_:
        main(["train", *TINY, f"hydra.run.dir={locked / 'run'}"])
    assert exit_.value.code == 2


def test_overlong_run_names_are_shortened_with_a_hash() -> None:
    overrides = ",".join(f"+experiment.k{i:02d}=a_rather_long_value_{i}" for i in range(20))
    name = run_name(overrides, 3)
    head, seed = name.split("/")
    assert seed == "seed=3" and len(head.encode()) <= 200 and head.startswith("+experiment.k00")
    assert run_name(overrides.replace("_19", "_x"), 3) != name  # the hash tells them apart
    assert run_name("activation=gelu", 0) == "activation=gelu/seed=0"  # short names unchanged
