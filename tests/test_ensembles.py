"""Ensembles of a group's seeds: every job saves its predictions, compare averages them, reports
the gain with a bootstrap interval, and claims can use `ensemble_gain`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from trainlab.compare import compare
from trainlab.config import compose
from trainlab.ensembles import PREDICTIONS, annotate, bootstrap_gain, load_predictions
from trainlab.train import train

TINY = ["data.subset=96", "trainer.batch_size=32", "trainer.epochs=1", "model.depth=1",
        "model.width=16", "trainer.progress=never", "stats.enabled=false"]  # fmt: skip
Y = np.array([0, 1, 2])


def test_a_job_saves_its_val_and_test_probabilities(tmp_path):
    summary = train(compose(TINY), tmp_path / "on")
    pred = load_predictions(tmp_path / "on")
    for split in ("val", "test"):
        probs, y = pred[f"{split}_probs"], pred[f"{split}_y"]
        assert probs.dtype == np.float16 and probs.shape == (len(y), 10)
        assert np.allclose(probs.astype(np.float32).sum(1), 1.0, atol=1e-2)
    test_acc = float((pred["test_probs"].argmax(1) == pred["test_y"]).mean())
    assert test_acc == pytest.approx(summary["test_acc"], abs=0.01)  # float16 ties aside
    train(compose([*TINY, "trainer.predictions=false"]), tmp_path / "off")
    assert not (tmp_path / "off" / PREDICTIONS).exists()


def final_model_predictions(cfg, run_dir: Path) -> dict[str, np.ndarray]:
    """What ensembles.predict gives for the checkpoint's final weights, pass by pass."""
    import torch

    from trainlab.ensembles import predict
    from trainlab.start import prepare

    _, data, preprocess, model = prepare(cfg)
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    preprocess.load_state_dict(state["preprocess"])
    bs = cfg.trainer.eval_batch_size
    return {s: predict(model, preprocess, getattr(data, f"{s}_x"), bs) for s in ("val", "test")}


@pytest.mark.parametrize("fused", [False, True])
def test_saved_predictions_are_the_final_models_own(fused, tmp_path):
    """The last validation and the test metrics' pass give the predictions (one pass each, not
    two): the same bytes as predicting again from the final weights, fused or not."""
    from trainlab.fused import train_fused

    cfgs = [compose([*TINY, "trainer.epochs=2", f"seed={s}"]) for s in (0, 1)]
    dirs = [tmp_path / str(s) for s in (0, 1)]
    if fused:
        train_fused(cfgs, dirs)
    else:
        for cfg, run_dir in zip(cfgs, dirs, strict=True):
            train(cfg, run_dir)
    for cfg, run_dir in zip(cfgs, dirs, strict=True):
        saved, again = load_predictions(run_dir), final_model_predictions(cfg, run_dir)
        for split in ("val", "test"):
            assert np.array_equal(saved[f"{split}_probs"], again[split]), split


def one_hot(pred: list[int], sure: float = 0.6) -> np.ndarray:
    probs = np.full((len(pred), 3), (1 - sure) / 2, dtype=np.float16)
    probs[np.arange(len(pred)), pred] = sure
    return probs


def make_job(sweep: Path, width: int, seed: int, pred: list[int]) -> None:
    job = sweep / f"model.width={width}" / f"seed={seed}"
    (job / ".hydra").mkdir(parents=True)
    overrides = [f"model.width={width}", f"seed={seed}"]
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    claims = [
        {"text": "ensembles gain", "kind": "threshold", "metric": "ensemble_gain",
         "where": {"model.width": 16}, "op": "above", "value": 0.0},
    ]  # fmt: skip
    config = {"seed": seed, "experiment": {"name": "ens", "claims": claims}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    acc = float(np.mean(np.array(pred) == Y))
    summary = {"status": "completed", "val_acc": acc, "test_acc": acc, "choices": {}}
    (job / "summary.json").write_text(json.dumps(summary))
    np.savez(
        job / PREDICTIONS, val_probs=one_hot(pred), val_y=Y, test_probs=one_hot(pred), test_y=Y
    )


def test_compare_reports_the_ensemble_and_judges_ensemble_gain(tmp_path):
    # each member is wrong on a different example; the majority is always right
    for seed, pred in enumerate([[1, 1, 2], [0, 2, 2], [0, 1, 0]]):
        make_job(tmp_path, 16, seed, pred)
    for seed in range(3):  # identical members: nothing to gain
        make_job(tmp_path, 64, seed, [0, 1, 0])
    result = compare(tmp_path)
    rows = {(r.group, r.split): r for r in result.ensembles}
    diverse = rows[("model.width=16", "test")]
    assert diverse.n == 3 and diverse.members == pytest.approx(2 / 3)
    assert diverse.ensemble == 1.0 and diverse.gain == pytest.approx(1 / 3)
    same = rows[("model.width=64", "test")]
    assert same.gain == 0 and (same.lo, same.hi) == (0, 0)
    (claim,) = result.claims
    assert claim.verdict == "confirmed", claim.detail  # 1/3 over each member, all seeds
    text = (tmp_path / "comparison.md").read_text()
    assert "## Ensembles" in text and "bootstrap" in text


def test_bootstrap_interval_brackets_the_gain():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    members = []
    for _ in range(4):  # noisy members: right 70% of the time, wrong in different places
        pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 3, 200))
        members.append(one_hot(list(pred)).astype(np.float32))
    stack = np.stack(members)
    lo, hi = bootstrap_gain(stack, y, np.random.default_rng(1))
    gain = float((stack.mean(0).argmax(1) == y).mean()) - np.mean(
        [(m.argmax(1) == y).mean() for m in stack]
    )
    assert lo - 1e-9 <= gain <= hi + 1e-9 and hi - lo < 0.3
    assert np.isnan(bootstrap_gain(stack[:1], y, np.random.default_rng(1))[0])


def test_jobs_without_predictions_are_left_out(tmp_path):
    make_job(tmp_path, 16, 0, [0, 1, 2])
    (tmp_path / "model.width=16" / "seed=0" / PREDICTIONS).unlink()
    result = compare(tmp_path)
    assert result.ensembles == []
    assert annotate(result.groups) == []
