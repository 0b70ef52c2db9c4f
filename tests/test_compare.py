"""compare on sweep directories built from constructed summaries (no training)."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from trainlab.callbacks import CompareOnMultirunEnd
from trainlab.compare import compare, compare_main, compare_searches, run_compare
from trainlab.report import plots
from trainlab.report.plots import Painter, is_log_spaced, plain_math
from trainlab.sweep import parse_override

T_975_DF2 = 4.302652729749464  # Student t quantile 0.975, 2 degrees of freedom


def make_job(
    sweep: Path,
    overrides: list[str],
    summary: dict | None = None,
    history: dict | None = None,
    experiment: dict | None = None,
    name: str | None = None,
) -> Path:
    """A job directory as `trainlab train -m` writes it."""
    seeds = [o for o in overrides if o.startswith("seed=")]
    rest = ",".join(o for o in overrides if not o.startswith(("seed=", "+experiment")))
    job = sweep / (name or f"{rest or 'default'}/{seeds[0] if seeds else 'seed=0'}")
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"seed": 0, "experiment": experiment})
    )
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))
    if history is not None:
        (job / "history.json").write_text(json.dumps(history))
    return job


def summary(val_acc: float, status: str = "completed", **extra) -> dict:
    base = {
        "status": status, "val_acc": val_acc, "best_val_acc": val_acc + 0.01,
        "test_acc": val_acc - 0.01, "train_loss": 1 - val_acc, "steps_to_target": 100,
        "seconds_to_target": 1.0, "wall_time_s": 5.0, "target_train_error": 0.25,
        "choices": {"data": "digits"}, "metrics": {},
    }  # fmt: skip
    return base | extra


def history(val_accs: list[float], steps_per_epoch: int = 10) -> dict:
    epochs = [
        {"epoch": e + 1, "step": (e + 1) * steps_per_epoch, "train_loss": 1 - a, "train_acc": a,
         "val_loss": 1.5 - a, "val_acc": a, "lr": 0.1, "time_s": 1.0}
        for e, a in enumerate(val_accs)
    ]  # fmt: skip
    return {"epochs": epochs, "steps": []}


VALS = {"relu": [0.90, 0.92, 0.94], "tanh": [0.80, 0.83, 0.81]}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 activations x 3 seeds, with histories."""
    for act, vals in VALS.items():
        for seed, v in enumerate(vals):
            make_job(
                tmp_path,
                [f"activation={act}", f"seed={seed}", "+experiment=activations"],
                summary(v, seed=seed),
                history([v - 0.2, v - 0.1, v]),
            )
    return tmp_path


def test_groups_across_seeds_with_numpy_statistics(sweep: Path) -> None:
    result = compare(sweep)
    assert [g.label for g in result.groups] == ["activation=relu", "activation=tanh"]  # ranked
    for g in result.groups:
        vals = np.array(VALS[g.params["activation"]])
        st = g.stat("val_acc")
        half = T_975_DF2 * vals.std(ddof=1) / math.sqrt(3)
        assert (g.n, st.n) == (3, 3)
        assert st.mean == pytest.approx(vals.mean())
        assert st.std == pytest.approx(vals.std(ddof=1))
        assert (st.lo, st.hi) == pytest.approx((vals.mean() - half, vals.mean() + half))


def test_ranking_follows_experiment_rank_by(tmp_path: Path) -> None:
    exp = {"name": "speed", "rank_by": "steps_to_target"}
    steps = {"a": [50, 60], "b": [10, 20], "c": [5, None], "d": [None, None]}
    for name, ss in steps.items():
        for seed, s in enumerate(ss):
            make_job(
                tmp_path,
                [f"x={name}", f"seed={seed}"],
                summary(0.9, steps_to_target=s),
                experiment=exp,
            )
    result = compare(tmp_path)
    # fewer steps first; a seed that never reached the target ranks below every group that always did
    assert [g.params["x"] for g in result.groups] == ["b", "a", "c", "d"]
    md = (tmp_path / "comparison.md").read_text()
    assert "1/2 never" in md and "never (2/2)" in md


def test_writes_markdown_csv_plots_and_tensorboard(sweep: Path) -> None:
    assert run_compare(str(sweep)) == 0
    md = (sweep / "comparison.md").read_text()
    assert "activation=relu" in md and "± " in md and "95%" in md
    rows = list(csv.DictReader((sweep / "comparison.csv").open()))
    assert [r["group"] for r in rows] == ["activation=relu", "activation=tanh"]
    assert float(rows[0]["val_acc_mean"]) == pytest.approx(np.mean(VALS["relu"]))
    assert rows[0]["n"] == "3" and rows[0]["activation"] == "relu"
    for name in ("curves_val_acc.png", "curves_train_loss.png"):
        assert (sweep / "plots" / name).stat().st_size > 1000
    assert json.loads((sweep / "claims.json").read_text()) == []


def test_tensorboard_one_run_per_group_drawn_as_margin_charts(sweep: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    compare(sweep)
    compare(sweep)  # a rerun replaces the runs, never duplicates them
    assert sorted(p.name for p in (sweep / "_compare").iterdir()) == [
        "activation=relu", "activation=tanh"
    ]  # fmt: skip
    run = sweep / "_compare" / "activation=relu"
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    vals = np.array(VALS["relu"])
    mean, std = vals.mean(), vals.std(ddof=1)
    expected = {"mean": mean, "lower": max(0.0, mean - std), "upper": min(1.0, mean + std)}
    for bound, want in expected.items():
        events = acc.Scalars(f"val/acc/{bound}")
        assert [e.step for e in events] == [10, 20, 30]  # the jobs' step axis
        assert events[-1].value == pytest.approx(want, abs=1e-6)
    assert {f"{t}/mean" for t in ("val/loss", "train/loss", "train/acc")} <= set(
        acc.Tags()["scalars"]
    )
    (event,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    charts = {c.title: c.margin.series for cat in layout.category for c in cat.chart}
    (series,) = charts["val/acc (mean ± std)"]  # one series: each group's run draws its band
    assert (series.value, series.lower, series.upper) == (
        "val/acc/mean", "val/acc/lower", "val/acc/upper"
    )  # fmt: skip


def test_numeric_sweep_plot_with_log_axis(tmp_path: Path) -> None:
    for lr in ("0.001", "0.01", "0.1"):
        for norm in ("none", "batch"):
            for seed in range(2):
                make_job(
                    tmp_path,
                    [f"optimizer.lr={lr}", f"norm={norm}", f"seed={seed}"],
                    summary(0.5 + seed / 10),
                )
    result = compare(tmp_path)
    assert len(result.groups) == 6
    assert (tmp_path / "plots" / "val_acc_vs_optimizer.lr.png").is_file()
    assert not list((tmp_path / "plots").glob("*_vs_norm.png"))  # not numeric


def test_markdown_links_every_plot(tmp_path: Path) -> None:
    """comparison.md is written after the plots: it links each PNG under plots/, and only those."""
    for lr in ("0.001", "0.01", "0.1"):
        for seed in range(2):
            make_job(
                tmp_path,
                [f"optimizer.lr={lr}", f"seed={seed}"],
                summary(0.5 + seed / 10),
                history([0.3, 0.4 + seed / 10]),
            )
    compare(tmp_path)
    pngs = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "plots").glob("*.png")}
    assert len(pngs) == 3  # two curve plots and val_acc vs optimizer.lr
    md = (tmp_path / "comparison.md").read_text()
    assert "## Plots" in md
    assert set(re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)) == pngs


def test_is_log_spaced() -> None:
    assert is_log_spaced([0.001, 0.01, 0.1])
    assert is_log_spaced([1, 2, 4, 8])
    assert is_log_spaced([0.001, 0.1])
    assert not is_log_spaced([1, 2, 3])
    assert not is_log_spaced([0, 1, 10, 100])
    assert not is_log_spaced([0.1, 0.2])


def test_parse_override() -> None:
    assert parse_override("+optimizer.lr=0.01") == ("optimizer.lr", "0.01")
    assert parse_override("++a=b=c") == ("a", "b=c")
    assert parse_override("~norm") == ("norm", "~")


def test_seed_experiment_hydra_and_run_name_exclusions_do_not_group(tmp_path: Path) -> None:
    for seed in range(3):
        job = make_job(
            tmp_path,
            [
                "+experiment=x",
                f"seed={seed}",
                "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=2",
                f"threads={seed}",
            ],
            summary(0.9),
            name=f"j{seed}",
        )
        hydra = {
            "hydra": {
                "job": {"config": {"override_dirname": {"exclude_keys": ["seed", "threads"]}}}
            }
        }
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    result = compare(tmp_path)
    assert [(g.label, g.n) for g in result.groups] == [("default", 3)]


def test_failed_diverged_missing_and_corrupt_jobs_are_reported(tmp_path: Path, capsys) -> None:
    make_job(tmp_path, ["activation=relu", "seed=0"], summary(0.9))
    make_job(tmp_path, ["activation=relu", "seed=1"], summary(0.8))
    make_job(
        tmp_path,
        ["activation=relu", "seed=2"],
        {"status": "diverged", "error": "loss is nan", "diverged_at_step": 37, "val_acc": 0.1},
    )
    make_job(
        tmp_path, ["activation=relu", "seed=3"], {"status": "failed", "error": "RuntimeError: boom"}
    )
    make_job(tmp_path, ["activation=relu", "seed=4"], None)  # killed
    bad = make_job(tmp_path, ["activation=relu", "seed=5"], None)
    (bad / "summary.json").write_text('{"status": "compl')  # killed while writing
    lst = make_job(tmp_path, ["activation=relu", "seed=6"], None)
    (lst / "summary.json").write_text("[1, 2]")
    (lst / "history.json").write_text("not json")
    assert run_compare(str(tmp_path)) == 1  # written; some jobs failed or are missing
    (g,) = compare(tmp_path).groups
    assert (g.n, g.count("diverged"), g.count("failed"), g.count("missing")) == (3, 1, 1, 3)
    assert g.stat("val_acc").mean == pytest.approx(
        (0.9 + 0.8 + 0.1) / 3
    )  # a divergence is a result
    loss = g.stat("train_loss")  # the diverged job's loss: the worst case, +inf, never dropped
    assert (loss.n, loss.never, loss.finite) == (3, 1, 2)
    md = (tmp_path / "comparison.md").read_text()
    for text in (
        "diverged at step 37: loss is nan",
        "RuntimeError: boom",
        "no summary.json",
        "unreadable summary.json",
    ):
        assert text in md
    assert "not an object" in md
    out = capsys.readouterr().out
    assert "diverged at step 37" in out and "RuntimeError: boom" in out
    row = next(csv.DictReader((tmp_path / "comparison.csv").open()))
    assert (row["diverged"], row["failed"], row["missing"]) == ("1", "1", "3")


def test_unreadable_overrides_fall_back_on_the_summary(tmp_path: Path) -> None:
    for seed in range(2):
        job = make_job(
            tmp_path,
            ["activation=relu", f"seed={seed}"],
            summary(0.9, overrides=["activation=relu", f"seed={seed}"]),
        )
        (job / ".hydra" / "overrides.yaml").write_text("- [unclosed")
    lost = make_job(tmp_path, ["activation=relu", "seed=9"], None, name="lost")
    (lost / ".hydra" / "overrides.yaml").write_text(": :")
    result = compare(tmp_path)
    assert sorted((g.label, g.n, len(g.jobs)) for g in result.groups) == [
        ("activation=relu", 2, 2),
        ("unreadable_overrides=lost", 0, 1),
    ]


def test_all_jobs_missing_summaries_do_not_crash(tmp_path: Path) -> None:
    make_job(tmp_path, ["activation=relu", "seed=0"], None)
    make_job(tmp_path, ["activation=tanh", "seed=0"], None)
    assert run_compare(str(tmp_path)) == 1  # compared; every job missing
    assert (tmp_path / "comparison.md").is_file()


@pytest.mark.parametrize("which", ["nonexistent", "empty"])
def test_bad_sweep_dir_exits_2_with_one_line(tmp_path: Path, capsys, which: str) -> None:
    path = tmp_path / "nope" if which == "nonexistent" else tmp_path
    assert run_compare(str(path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err


def test_claims_from_experiment_config(tmp_path: Path, capsys) -> None:
    exp = {
        "name": "activations",
        "description": "every activation",
        "claims": [
            {"text": "relu beats tanh", "kind": "compare", "metric": "val_acc",
             "a": {"activation": "relu"}, "op": "higher", "b": {"activation": "tanh"}},
            {"text": "tanh above 0.95", "kind": "threshold", "metric": "val_acc",
             "where": {"activation": "tanh"}, "op": "above", "value": 0.95},
        ],
    }  # fmt: skip
    for act, vals in VALS.items():
        for seed, v in enumerate(vals):
            make_job(
                tmp_path,
                [f"activation={act}", f"seed={seed}", "+experiment=activations"],
                summary(v),
                experiment=exp,
            )
    assert run_compare(str(tmp_path)) == 0
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert [c["verdict"] for c in claims] == ["confirmed", "refuted"]
    assert claims[0]["numbers"][0]["a"]["n"] == 3
    out = capsys.readouterr().out
    assert re.search(r"^CONFIRMED +relu beats tanh", out, re.M), out
    assert re.search(r"^REFUTED +tanh above 0.95", out, re.M), out
    assert max(len(line) for line in out.splitlines()) <= 100  # the terminal's compact view
    md = (tmp_path / "comparison.md").read_text()
    assert "# Comparison: activations" in md and "**refuted**" in md


def test_callback_exits_as_the_cli_does(sweep: Path, tmp_path: Path, monkeypatch) -> None:
    """The end-of-sweep callback and `trainlab compare` share their exit codes (0, 1, 2)."""
    callback = CompareOnMultirunEnd()

    def code(folder: Path) -> int:
        try:
            callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(folder)}}}))
        except SystemExit as exit_:
            return int(exit_.code)
        return 0

    assert code(sweep) == run_compare(str(sweep)) and (sweep / "comparison.md").is_file()
    assert code(tmp_path / "nope") == run_compare(str(tmp_path / "nope")) == 2
    callback.on_multirun_end(OmegaConf.create({}))  # no hydra node at all: nothing to compare
    make_job(sweep, ["activation=relu", "seed=9", "+experiment=activations"], {"status": "failed"})
    assert code(sweep) == run_compare(str(sweep)) == 1

    def broken(*_: object) -> int:
        raise RuntimeError("compare is broken")

    monkeypatch.setattr("trainlab.compare.compare", broken)
    assert code(sweep) == 1  # logged with its traceback; the jobs' results are there


@pytest.mark.slow  # ~17 s: a real sweep
def test_real_sweep_runs_compare_at_the_end(tmp_path: Path) -> None:
    """`trainlab train -m` for real: the callback compares, seeds aggregate, the CLI reruns it."""
    sweep = tmp_path / "sweep"
    claim = "{text:learns,kind:all_jobs,metric:val_acc,where:{},op:'>=',value:0.0}"
    args = ["train", "-m", "data.subset=64", "trainer.epochs=2", "model.width=8", "model.depth=1"]
    args += ["activation=relu,tanh", "seed=0,1", f"experiment={{name:tiny,claims:[{claim}]}}"]
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab", *args, f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Claims (" in proc.stdout and (sweep / "comparison.md").is_file()
    rows = list(csv.DictReader((sweep / "comparison.csv").open()))
    assert sorted((r["activation"], r["n"], r["failed"]) for r in rows) == [
        ("relu", "2", "0"),
        ("tanh", "2", "0"),
    ]
    assert {p.name for p in (sweep / "plots").glob("*.png")} >= {
        "curves_val_acc.png",
        "curves_train_loss.png",
    }
    assert len(list((sweep / "_compare").glob("*/events.out.tfevents.*"))) == 2
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab", "compare", str(sweep)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and re.search(r"^CONFIRMED .*learns", proc.stdout, re.M), (
        proc.stderr
    )
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab", "compare", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and str(tmp_path / "nope") in proc.stderr


# ---------------------------------------------------------------- several sweeps: searches

AT_LEAST = {
    "text": "random at least as good as the grid", "kind": "compare", "metric": "best_val_acc",
    "a": {"search": "hparam_search"}, "op": "at_least", "b": {"search": "hparam_grid"},
    "margin": 0.01,
}  # fmt: skip
# per seed: (lr, weight_decay, best_val_acc, test_acc) of each trial; the best is marked
RANDOM = {
    0: [(1e-3, 1e-5, 0.84, 0.83), (2e-2, 1e-3, 0.70, 0.69), (4e-3, 2e-6, 0.88, 0.85)],  # best
    1: [(5e-3, 1e-4, 0.87, 0.80), (1e-4, 1e-6, 0.60, 0.61), (3e-4, 1e-2, 0.75, 0.76)],
    2: [(2e-3, 3e-5, 0.89, 0.86), (9e-2, 5e-3, 0.30, 0.31), (7e-3, 1e-4, 0.80, 0.81)],
}
GRID = {
    seed: [(lr, 1e-4, acc + seed / 100, acc + seed / 100 - 0.02) for lr, acc in points]
    for seed, points in enumerate([[(3.16e-4, 0.78), (3.16e-3, 0.82), (3.16e-2, 0.70)]] * 3)
}


def make_search(sweep: Path, name: str, trials: dict, claims: list | None = None) -> Path:
    exp = {"name": name, "rank_by": "best_val_acc", "cross_sweep_claims": claims or []}
    for seed, points in trials.items():
        for i, (lr, wd, best, test) in enumerate(points):
            make_job(
                sweep,
                [f"optimizer.lr={lr}", f"regularizer.weight_decay={wd}", f"seed={seed}"],
                summary(best - 0.01, best_val_acc=best, test_acc=test, seed=seed),
                experiment=exp,
                name=f"{seed}_{i}",  # Optuna sweeps number their jobs
            )
    return sweep


def per_seed_best(trials: dict) -> tuple[np.ndarray, np.ndarray]:
    best = [max(points, key=lambda p: p[2]) for _, points in sorted(trials.items())]
    return np.array([b[2] for b in best]), np.array([b[3] for b in best])


@pytest.fixture
def searches(tmp_path: Path) -> tuple[Path, Path]:
    return (
        make_search(tmp_path / "search", "hparam_search", RANDOM, [AT_LEAST]),
        make_search(tmp_path / "grid", "hparam_grid", GRID),
    )


def test_searches_compare_the_best_job_per_seed(searches: tuple[Path, Path]) -> None:
    result = compare_searches(searches)
    assert [s.label for s in result.searches] == ["hparam_search", "hparam_grid"]  # ranked
    for s, trials in zip(result.searches, (RANDOM, GRID), strict=True):
        val, test = per_seed_best(trials)
        assert (len(s.jobs), s.best.n) == (9, 3)
        for metric, vals in (("best_val_acc", val), ("test_acc", test)):
            st = s.best.stat(metric)
            half = T_975_DF2 * vals.std(ddof=1) / math.sqrt(3)
            assert (st.mean, st.std) == pytest.approx((vals.mean(), vals.std(ddof=1)))
            assert (st.lo, st.hi) == pytest.approx((vals.mean() - half, vals.mean() + half))
    random = result.searches[0]
    assert [j.params["optimizer.lr"] for j in random.best.jobs] == ["0.004", "0.005", "0.002"]
    # the default output: a folder of the first sweep; its own comparison.md is left alone
    out = searches[0] / "hparam_search_vs_hparam_grid"
    assert result.out_dir == out and not (searches[0] / "comparison.md").exists()
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [(r["search"], r["jobs"], r["seeds"]) for r in rows] == [
        ("hparam_search", "9", "3"),
        ("hparam_grid", "9", "3"),
    ]
    assert float(rows[0]["test_acc_mean"]) == pytest.approx(per_seed_best(RANDOM)[1].mean())
    assert rows[0]["best_configuration"] == (
        "optimizer.lr=0.002,regularizer.weight_decay=3e-05 (best_val_acc 0.890, seed 2)"
    )
    md = (out / "comparison.md").read_text()
    assert "# Comparison of searches: hparam_search vs hparam_grid" in md
    assert "## Per seed" in md and "| hparam_grid | 2 | 3 | 0.840 | 0.820 |" in md


@pytest.mark.parametrize(
    "shift, verdict",
    [(0.0, "confirmed"), (-0.15, "refuted"), (-0.05, "inconclusive")],
)
def test_cross_sweep_claims_are_judged(tmp_path: Path, shift: float, verdict: str) -> None:
    """Random per-seed bests 0.88, 0.87, 0.89 (95% interval 0.855-0.905), shifted, against the
    grid's 0.82, 0.83, 0.84 (0.795-0.845; lowered by the 0.01 margin: 0.785-0.835)."""
    random = {s: [(lr, wd, b + shift, t) for lr, wd, b, t in ps] for s, ps in RANDOM.items()}
    a = make_search(tmp_path / "search", "hparam_search", random, [AT_LEAST])
    b = make_search(tmp_path / "grid", "hparam_grid", GRID, [AT_LEAST])  # stated twice, judged once
    result = compare_searches([a, b], tmp_path / "out")
    assert [c.verdict for c in result.claims] == [verdict]
    claims = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert claims[0]["verdict"] == verdict and claims[0]["numbers"][0]["a"]["n"] == 3
    assert claims[0]["numbers"][0]["b"]["group"] == "hparam_grid"


def test_searches_skip_diverged_and_failed_jobs(tmp_path: Path) -> None:
    a = make_search(tmp_path / "a", "a", {0: RANDOM[0], 1: RANDOM[1]})
    make_job(a, ["optimizer.lr=10", "seed=0"], summary(0.98, status="diverged"), name="div")
    make_job(a, ["optimizer.lr=20", "seed=2"], {"status": "failed", "error": "boom"}, name="f")
    b = make_search(tmp_path / "b", "a", GRID)  # the same experiment twice: labelled by dir
    result = compare_searches([a, b])
    first = next(s for s in result.searches if s.label == "a@a")
    assert [j.params["optimizer.lr"] for j in first.best.jobs] == ["0.004", "0.005"]
    assert (first.count("diverged"), first.count("failed")) == (1, 1)
    md = (result.out_dir / "comparison.md").read_text()
    assert "| a@a | 2 | 1 | – | – | no completed job |" in md and "boom" in md
    proc = subprocess.run([sys.executable, "-m", "trainlab", "compare", str(a), str(b)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1 and "Claims" not in proc.stderr  # written, but a job failed
    jobs = sum(len(s.jobs) for s in result.searches)
    see = result.out_dir / "comparison.md"
    assert proc.stderr.strip() == f"trainlab: 1 of {jobs} jobs failed (see {see})"


def test_cli_compares_several_sweeps(searches: tuple[Path, Path], tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "trainlab", "compare", *map(str, searches)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = searches[0] / "hparam_search_vs_hparam_grid" / "comparison.md"
    assert f"Wrote {out}" in proc.stdout and out.is_file()
    assert "best_val_acc (best per seed)" in proc.stdout and "\nCONFIRMED " in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if str(tmp_path) not in line]
    assert max(map(len, lines)) <= 100  # the terminal view fits, but for lines naming a path
    assert re.search(r"^\(in comparison.md also: .*best configuration\)$", proc.stdout, re.M)
    assert re.search(r"^hparam_grid +2 +3 +0.840 +0.820 +lr=0.00316,weight_decay=0.0001$",
                     proc.stdout, re.M)  # a seed's row: its choice, short keys  # fmt: skip
    proc = subprocess.run([*cmd, "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 0 and (tmp_path / "o" / "claims.json").is_file()
    proc = subprocess.run([*cmd[:-1], str(tmp_path / "nope")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"trainlab compare: no such directory: {tmp_path / 'nope'}"
    ]


@pytest.mark.parametrize("args", [[], ["a", "--out"], ["a", "b", "-x"]])
def test_compare_usage_errors_exit_2(args: list[str], capsys) -> None:
    assert compare_main(args) == 2
    assert capsys.readouterr().err.startswith("usage: trainlab compare")


def _written(root: Path) -> list[Path]:
    names = ("comparison.md", "comparison.csv", "claims.json", "plots", "_compare")
    return [p for p in root.rglob("*") if p.name in names]


def test_a_directory_of_several_sweeps_is_refused_and_nothing_written(
    sweep: Path, tmp_path: Path, capsys
) -> None:
    parent = tmp_path / "several"
    for name in ("a", "b"):
        make_job(parent / name, ["activation=relu", "seed=0"], summary(0.9))
        (parent / name / "multirun.yaml").write_text("hydra: {}\n")  # as Hydra's sweeper leaves
    assert compare_main([str(parent)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"trainlab compare: {parent} holds the jobs of 2 sweeps (a, b): give one sweep's directory"
    ]
    assert _written(parent) == []


def test_a_directory_of_several_experiments_is_refused(tmp_path: Path, capsys) -> None:
    make_job(tmp_path, ["activation=relu", "seed=0"], summary(0.9), experiment={"name": "x"})
    make_job(tmp_path, ["activation=tanh", "seed=0"], summary(0.9), experiment={"name": "y"})
    assert compare_main([str(tmp_path)]) == 2
    assert "holds the jobs of 2 experiments (x, y)" in capsys.readouterr().err
    assert _written(tmp_path) == []


def test_out_writes_elsewhere_and_the_terminal_keeps_its_promise(
    sweep: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path.parent / f"{tmp_path.name}_elsewhere" / "report"
    assert compare_main([str(sweep), "--out", str(out)]) == 0
    assert _written(sweep) == []
    assert {p.name for p in out.iterdir()} >= {"comparison.md", "comparison.csv", "claims.json"}
    assert "![curves_val_acc](plots/curves_val_acc.png)" in (out / "comparison.md").read_text()
    text = capsys.readouterr().out
    assert f"Wrote {out / 'comparison.md'}" in text
    assert "[95%" not in text and "every column with intervals" in text


def test_log_axes_label_their_ticks_in_plain_text() -> None:
    """10⁻¹ and 2×10⁻¹ as text: math-text labels are parsed anew for every figure."""
    assert plain_math(r"$\mathdefault{2\times10^{-1}}$") == "2×10⁻¹"
    assert plain_math(r"$\mathdefault{10^{0}}$") == "10⁰" and plain_math("") == ""
    painter = Painter()
    fig, ax = painter.figure()
    ax.plot([1, 2, 3], [0.9, 0.4, 0.15])
    painter.log_scale(ax, "y")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.yaxis.get_majorticklabels() + ax.yaxis.get_minorticklabels()]
    assert "10⁰" in labels and "2×10⁻¹" in labels and not any("$" in t for t in labels)


def test_figures_drawn_in_two_processes_are_the_bytes_drawn_in_one(tmp_path: Path) -> None:
    """write_plots draws every second figure in a forked child: same PNGs as one process."""
    for lr in ("0.001", "0.01", "0.1"):
        for seed in range(2):
            make_job(
                tmp_path / "sweep",
                [f"optimizer.lr={lr}", f"seed={seed}"],
                summary(0.5 + seed / 10),
                history([0.3, 0.4 + seed / 10]),
            )
    result = compare(tmp_path / "sweep", out_dir=tmp_path / "two")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: write_plots draws every figure in this process")
    serial = plots.Painter()  # the figures one by one, as one process draws them
    one = tmp_path / "one"
    one.mkdir()
    paths = [plots._curves(serial, result, key, one) for key in plots.PLOT_CURVES]
    paths.append(serial.vs_param(result, "optimizer.lr", one))
    two = sorted((tmp_path / "two" / "plots").glob("*.png"))
    assert [p.name for p in two] == sorted(p.name for p in paths)
    assert all(p.read_bytes() == (one / p.name).read_bytes() for p in two)


def test_two_processes_keep_the_order_and_redo_a_failed_childs_tasks(tmp_path: Path) -> None:
    parent = os.getpid()
    assert plots.in_two_processes([lambda i=i: (i, os.getpid() == parent) for i in range(5)]) == [
        (0, True), (1, False), (2, True), (3, False), (4, True)
    ]  # fmt: skip

    def only_here() -> int:
        if os.getpid() != parent:
            raise RuntimeError("the child fails")
        return os.getpid()

    assert plots.in_two_processes([os.getpid, only_here]) == [parent, parent]
    with pytest.raises(ZeroDivisionError):  # a task's own error reaches the caller
        plots.in_two_processes([os.getpid, lambda: 1 // 0])
