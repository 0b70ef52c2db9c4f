"""The experiment files of sections 5-8 of the lecture's comparisons compose, sweep at least 3
seeds, and state claims that compare can judge: known metrics, selectors that name swept values."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from omegaconf import DictConfig, OmegaConf

from trainlab.claims import DERIVED, check_claim
from trainlab.cli import conf_dir
from trainlab.config import compose
from trainlab.schema import GROUPS
from trainlab.search import seed_round_robin
from trainlab.train import train

EXPERIMENTS = (
    "regularization", "augmentation", "schedules", "optimizers",
    "hparam_search", "hparam_grid", "babysitting",
)  # fmt: skip
TINY = ["data=digits", "data.subset=64", "model=mlp", "model.width=8", "model.depth=1",
        "trainer.epochs=1", "trainer.batch_size=16", "trainer.checkpoint=false"]  # fmt: skip


def sweep_params(name: str) -> dict[str, list[Any] | None]:
    """hydra.sweeper.params of `+experiment=NAME`: key -> its values (None: a continuous range)."""
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = hydra_compose("config", [f"+experiment={name}"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params) or {}
    parser = OverridesParser.create()
    out: dict[str, list[Any] | None] = {}
    for key, text in params.items():
        override = parser.parse_override(f"{key}={text}")
        value = override.value()
        if isinstance(value, IntervalSweep):
            out[key] = None
        elif isinstance(value, (ChoiceSweep, RangeSweep)) or override.is_sweep_override():
            out[key] = list(override.sweep_iterator())
        else:
            out[key] = [value]
    return out


@pytest.fixture(scope="module")
def summary_keys(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every metric path a real job writes: one completed tiny run with statistics on, one diverged."""
    keys: set[str] = set(DERIVED)
    runs = {"ok": [], "diverged": ["optimizer.lr=1e30", "init=large_random"]}
    for name, extra in runs.items():
        summary = train(compose([*TINY, *extra]), tmp_path_factory.mktemp(name))
        assert summary["status"] == ("completed" if name == "ok" else "diverged")
        keys |= set(summary) | {f"metrics.{k}" for k in summary.get("metrics") or {}}
    return keys


def _same(have: Any, want: Any) -> bool:
    """A selector value matches a swept value (numbers numerically, null as None)."""
    if have is None or want is None:
        return have is None and want is None
    try:
        return math.isclose(float(have), float(want), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(have) == str(want)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_composes_with_its_own_name(name: str) -> None:
    cfg = compose([f"+experiment={name}"])
    assert cfg.experiment.name == name
    assert cfg.experiment.description
    assert cfg.threads == 1  # small jobs: one torch thread each (see the files)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_sweeps_at_least_three_seeds(name: str) -> None:
    params = sweep_params(name)
    if "seed" not in params:  # random search: the seed comes round robin with the trial number
        with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
            cfg = hydra_compose("config", [f"+experiment={name}"], return_hydra_config=True)
        assert cfg.hydra.sweeper.custom_search_space == "trainlab.search.seed_round_robin"
        assert cfg.experiment.seeds >= 3 and cfg.hydra.sweeper.n_trials % cfg.experiment.seeds == 0
        return
    assert params["seed"] is not None and len(set(params["seed"])) >= 3


def test_seed_round_robin_gives_each_seed_every_nth_trial() -> None:
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    cfg = OmegaConf.create({"experiment": {"seeds": 3}})
    seeds = []
    for _ in range(7):
        trial = study.ask()
        seed_round_robin(cfg, trial)
        seeds.append(trial.params["seed"])
        study.tell(trial, 0.5)
    assert seeds == [0, 1, 2, 0, 1, 2, 0]


def test_hparam_search_draws_the_same_trials_in_one_batch_as_one_by_one() -> None:
    """The experiment hands all its trials to the launcher at once (hydra.sweeper.n_jobs =
    n_trials, so the workers run them in parallel): sound only because its sampler draws the
    same values in the same order whatever the batch size. Asked one by one (each told before
    the next) and in one batch, with the experiment's own sampler, search space and seeds."""
    pytest.importorskip("optuna")
    from hydra.utils import instantiate
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = hydra_compose("config", ["+experiment=hparam_search"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.n_jobs == sweeper.n_trials  # one batch
    parser = OverridesParser.create()
    space = {key: create_optuna_distribution_from_override(parser.parse_override(f"{key}={v}"))
             for key, v in sweeper.params.items()}  # fmt: skip

    def trials(batch: int) -> list[dict[str, Any]]:
        import optuna

        study = optuna.create_study(sampler=instantiate(sweeper.sampler), direction="maximize")
        drawn = []
        while len(drawn) < sweeper.n_trials:
            asked = [study.ask() for _ in range(batch)]
            for trial in asked:
                seed_round_robin(cfg, trial)
                drawn.append({k: trial._suggest(k, d) for k, d in space.items()} | trial.params)
            for i, trial in enumerate(asked):
                study.tell(trial, 0.5 + 0.01 * i)  # what the jobs return does not matter
        return drawn

    one_by_one, batched = trials(1), trials(sweeper.n_jobs)
    assert len({round(t["optimizer.lr"], 12) for t in batched}) == sweeper.n_trials
    assert batched == one_by_one


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_swept_value_composes(name: str) -> None:
    """Each value of each swept key composes on top of the experiment (a typo fails here)."""
    for key, values in sweep_params(name).items():
        if key == "seed":
            continue
        for value in values or []:
            text = "null" if value is None else str(value)
            cfg = compose([f"+experiment={name}", f"{key}={text}"])
            if key in GROUPS:
                assert cfg[key].name == value


def _selectors(claim: dict) -> list[dict]:
    return [claim[k] for k in ("a", "b", "where") if k in claim]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_claims_name_real_metrics_and_swept_values(name: str, summary_keys: set[str]) -> None:
    cfg: DictConfig = compose([f"+experiment={name}"])
    exp = OmegaConf.to_container(cfg.experiment)
    params = sweep_params(name)
    assert exp.get("rank_by", "val_acc") in summary_keys
    for spec in exp["claims"]:
        claim = check_claim(spec)  # well-formed, or ValueError
        assert claim["metric"] in summary_keys, f"{name}: unknown metric {claim['metric']!r}"
        for selector in _selectors(claim):
            for key, want in selector.items():
                assert key in params or key in GROUPS, (
                    f"{name}: {key!r} is neither swept nor a group"
                )
                swept = params.get(key)
                if swept is None:  # a continuous range (random search) or a fixed group choice
                    continue
                wants = want if isinstance(want, list) else [want]
                for w in wants:
                    assert any(_same(v, w) for v in swept), f"{name}: {key}={w!r} is not swept"
        if claim["kind"] == "compare":
            assert claim["a"] != claim["b"]


def test_hparam_search_is_random_in_log_space_and_the_grid_matches_its_budget() -> None:
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = hydra_compose("config", ["+experiment=hparam_search"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.sampler._target_ == "optuna.samplers.RandomSampler"
    assert sweeper.direction == "maximize"
    search = sweep_params("hparam_search")
    assert search["optimizer.lr"] is None and search["regularizer.weight_decay"] is None
    parser = OverridesParser.create()
    for key in ("optimizer.lr", "regularizer.weight_decay"):
        value = parser.parse_override(f"{key}={sweeper.params[key]}").value()
        assert "log" in value.tags
    grid = sweep_params("hparam_grid")
    budget = math.prod(len(v) for v in grid.values())
    assert budget == sweeper.n_trials  # the same number of jobs
    for key in ("optimizer.lr", "regularizer.weight_decay"):  # the grid lies inside the box
        box = parser.parse_override(f"{key}={sweeper.params[key]}").value()
        assert all(box.start < v < box.end for v in grid[key])


def test_hparam_cross_sweep_claims_name_both_searches(summary_keys: set[str]) -> None:
    """random vs grid is judged by `trainlab compare SEARCH GRID`: each search is labelled by
    its experiment name, and every cross-sweep claim is well formed and names both."""
    searches = {
        compose([f"+experiment={n}"]).experiment.name for n in ("hparam_search", "hparam_grid")
    }
    exp = OmegaConf.to_container(compose(["+experiment=hparam_search"]).experiment)
    assert exp["cross_sweep_claims"]
    for spec in exp["cross_sweep_claims"]:
        claim = check_claim(spec)
        assert claim["metric"] in summary_keys
        assert (
            claim["kind"] == "compare" and {claim["a"]["search"], claim["b"]["search"]} == searches
        )
