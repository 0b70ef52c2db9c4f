"""The experiment files of the lecture's end of section 8 (ensembles, Polyak averaging,
transfer learning) meet the standards of the others: they compose, sweep at least 3 seeds over
values that compose, state claims on metrics a real job (or compare's ensembles) writes with
selectors that find their groups, and document a full-size command that composes."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from test_experiments_a import _same, full_size_command, grid_groups, options, sweep_params

from trainlab.claims import DERIVED, INCONCLUSIVE, check_claim, evaluate_claim
from trainlab.config import compose
from trainlab.ensembles import DERIVED_KEYS
from trainlab.schema import GROUPS
from trainlab.train import train

EXPERIMENTS = ("ensembles", "polyak", "transfer")
TINY = ["data=digits", "data.subset=64", "model=mlp", "model.width=8", "model.depth=1",
        "trainer.epochs=1", "trainer.batch_size=16", "trainer.checkpoint=false",
        "trainer.progress=never", "trainer.ema_decay=0.9"]  # fmt: skip


@pytest.fixture(scope="module")
def metric_keys(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """What a real job with averaged weights writes, the derived metrics and the ensembles'."""
    summary = train(compose(TINY), tmp_path_factory.mktemp("job"))
    assert summary["status"] == "completed"
    return set(DERIVED) | set(DERIVED_KEYS) | set(summary)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_composes_sweeps_seeds_and_documents_full_size(name: str) -> None:
    cfg = compose([f"+experiment={name}"])
    assert name in options("experiment")
    assert cfg.experiment.name == name and cfg.experiment.description
    assert cfg.threads == 1
    assert len(set(sweep_params(name)["seed"])) >= 3
    overrides = full_size_command(name)
    first = [o.split("=", 1)[0] + "=" + o.split("=", 1)[1].split(",")[0] for o in overrides]
    assert compose([f"+experiment={name}", *first]).experiment.name == name


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_swept_value_composes(name: str) -> None:
    for key, values in sweep_params(name).items():
        for value in values:
            cfg = compose([f"+experiment={name}", f"{key}={value}"])
            got = cfg[key].name if key in (*GROUPS, "transfer") else OmegaConf.select(cfg, key)
            assert _same(str(got), value), (key, value)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_claims_name_real_metrics_and_find_their_groups(name: str, metric_keys) -> None:
    cfg, groups = grid_groups(name)
    for spec in OmegaConf.to_container(cfg.experiment.claims):
        claim = check_claim(spec)
        assert claim["metric"] in metric_keys, f"{name}: unknown metric {claim['metric']!r}"
        result = evaluate_claim(spec, groups)
        assert not result.detail.startswith(("no group", "no pair")), result.detail
        if result.verdict == INCONCLUSIVE:
            assert "too few seeds" not in result.detail
