"""experiment.best_of (each configuration at its best lr) and BN's train- vs eval-mode metric."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from trainlab.bn_modes import batch_stats_metrics
from trainlab.build import build_model
from trainlab.claims import CONFIRMED, REFUTED, check_claim, evaluate_claim
from trainlab.cli import conf_dir
from trainlab.compare import compare
from trainlab.config import compose
from trainlab.searches import best_of_groups
from trainlab.sweep import Job

CONF = Path(conf_dir())
WITH_BEST_OF = sorted(
    p.stem for p in (CONF / "experiment").glob("*.yaml") if "best_of:" in p.read_text()
)


def job(opt: str, lr: str, seed: int, steps: float | None, status: str = "completed") -> Job:
    summary = {"status": status, "steps_to_target": steps, "seed": seed}
    return Job(Path(f"/{opt}/{lr}/{seed}"), {"optimizer": opt, "optimizer.lr": lr}, str(seed),
               status, summary=summary)  # fmt: skip


def test_best_of_picks_each_seeds_best_setting():
    jobs = [job("sgd", lr, s, steps) for s in range(3)
            for lr, steps in (("0.1", 100 + s), ("0.01", 300), ("1", None))]  # fmt: skip
    jobs += [job("adam", lr, s, steps) for s in range(3)
             for lr, steps in (("0.001", 40 + s), ("0.1", 20 if s else None))]  # fmt: skip
    jobs.append(job("adam", "1", 0, None, status="diverged"))
    groups = {g.label: g for g in best_of_groups(jobs, ["optimizer.lr"], "steps_to_target", False)}
    assert set(groups) == {"optimizer=sgd", "optimizer=adam"}
    assert groups["optimizer=sgd"].values("steps_to_target") == [100, 101, 102]
    assert groups["optimizer=adam"].values("steps_to_target") == [40, 20, 20]
    assert all(j.params == {"optimizer": "adam", "optimizer.lr": "0.1"}
               for j in groups["optimizer=adam"].jobs[1:])  # fmt: skip


def sweep_params(name: str) -> dict[str, list[str]]:
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    params = yaml.safe_load(text)["hydra"]["sweeper"]["params"]
    return {k: [v.strip() for v in str(val).split(",")] for k, val in params.items()}


class Fake:
    """A best-of group whose metric is a clean 4-seed measurement around `center`."""

    def __init__(self, params: dict[str, str], center: float) -> None:
        self.params, self.choices, self.center = params, {}, center
        self.label = ",".join(f"{k}={v}" for k, v in sorted(params.items()))

    def values(self, metric: str) -> list[float]:
        return [self.center + d for d in (-0.01, 0.0, 0.01, 0.005)]

    def stat(self, metric: str):
        from trainlab.claims import describe

        return describe(self.values(metric))


def test_some_experiments_use_best_of():
    assert {"optimizers", "relu_tanh_cnn", "babysitting"} <= set(WITH_BEST_OF)


@pytest.mark.parametrize("name", WITH_BEST_OF)
def test_best_of_claims_select_swept_values_outside_over(name):
    exp = OmegaConf.to_container(compose([f"+experiment={name}"]).experiment)
    over, claims = exp["best_of"]["over"], exp["best_of"]["claims"]
    params = {k: v for k, v in sweep_params(name).items() if k != "seed"}
    assert set(over) <= set(params), "best_of.over names swept keys"
    kept = {k: v for k, v in params.items() if k not in over}
    groups = [dict(zip(kept, combo, strict=True)) for combo in itertools.product(*kept.values())]
    for spec in claims:
        claim = check_claim(spec)
        for selector in (claim[k] for k in ("a", "b", "where") if k in claim):
            assert not set(selector) & set(over), f"{name}: selects on a key best_of collapses"
            assert set(selector) <= set(kept), selector
        result = evaluate_claim(spec, [Fake(p, 1.0) for p in groups])
        assert not result.detail.startswith(("no group", "no pair", "invalid")), result.detail


def test_compare_judges_best_of_claims(tmp_path):
    """A real sweep directory: lr 0.1 is sgd's best, 0.01 adam's; adam at its best beats sgd at
    its best although at lr 0.1 it is the slower."""
    exp = {"name": "opt", "rank_by": "steps_to_target", "claims": [],
           "best_of": {"over": ["optimizer.lr"], "claims": [
               {"text": "adam beats sgd", "kind": "compare", "metric": "steps_to_target",
                "a": {"optimizer": "adam"}, "op": "lower", "b": {"optimizer": "sgd"}}]}}  # fmt: skip
    steps = {("sgd", "0.1"): 200, ("sgd", "0.01"): 400, ("adam", "0.1"): 300, ("adam", "0.01"): 50}
    for (opt, lr), base in steps.items():
        for seed in range(4):
            d = tmp_path / f"optimizer={opt},optimizer.lr={lr}" / f"seed={seed}"
            (d / ".hydra").mkdir(parents=True)
            overrides = [f"optimizer={opt}", f"optimizer.lr={lr}", f"seed={seed}"]
            (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
            (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"experiment": exp}))
            summary = {"status": "completed", "seed": seed, "steps_to_target": base + 3 * seed,
                       "val_acc": 0.9, "train_loss": 0.3}  # fmt: skip
            (d / "summary.json").write_text(json.dumps(summary))
    result = compare(tmp_path)
    (claim,) = result.claims
    assert claim.text.startswith("[each at its best optimizer.lr]")
    assert claim.verdict == CONFIRMED
    flipped = {**exp["best_of"]["claims"][0], "op": "higher"}
    groups = best_of_groups(result.jobs, ["optimizer.lr"], "steps_to_target", False)
    assert evaluate_claim(flipped, groups).verdict == REFUTED


def test_batch_norm_train_and_eval_mode_differ_without_touching_running_stats():
    torch.manual_seed(0)
    model = build_model(compose(["norm=batch", "model.depth=2", "model.width=16"]), (8,), 3)
    x, y = torch.randn(64, 8) * 2 + 1, torch.randint(0, 3, (64,))
    bn = model.blocks[0].norm
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    metrics = batch_stats_metrics(model, torch.nn.Identity(), x, y, 2, eval_acc=0.5)
    assert set(metrics) == {"val_loss_batch_stats", "val_acc_batch_stats", "bn_mode_acc_gap"}
    assert metrics["bn_mode_acc_gap"] == pytest.approx(abs(metrics["val_acc_batch_stats"] - 0.5))
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert torch.equal(bn.num_batches_tracked, before[2])
    assert model.training  # the mode it was in
    plain = build_model(compose(["norm=layer", "model.depth=2", "model.width=16"]), (8,), 3)
    assert batch_stats_metrics(plain, torch.nn.Identity(), x, y, 2, eval_acc=0.5) == {}


def test_a_bn_run_records_the_mode_gap(tmp_path):
    from trainlab.train import train

    overrides = ["norm=batch", "data.subset=96", "trainer.epochs=1", "trainer.batch_size=4",
                 "model.width=16", "model.depth=2", "trainer.progress=never",
                 "trainer.checkpoint=false"]  # fmt: skip
    metrics = train(compose(overrides), tmp_path)["metrics"]
    assert 0 <= metrics["bn_mode_acc_gap"] <= 1
    assert 0 <= metrics["val_acc_batch_stats"] <= 1
