"""trainlab.compose_cache: a config derived from an earlier composition equals Hydra's own."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from trainlab import compose_cache
from trainlab.config import conf_dir
from trainlab.schema import register_configs

BASE = ["activation=relu", "seed=0", "trainer.epochs=3", "hydra.job.name=train"]
CASES = [
    ["activation=relu", "seed=3", "trainer.epochs=3", "hydra.job.name=train"],  # a seed
    ["activation=relu", "seed=1", "trainer.epochs=5", "hydra.job.name=other"],  # values, hydra
    ["seed=2", "activation=relu", "hydra.job.name=train", "trainer.epochs=3"],  # another order
    ["activation=tanh", "seed=0", "trainer.epochs=3", "hydra.job.name=train"],  # a group
    ["activation=relu", "seed=0", "trainer.epochs=3", "hydra.job.name=train", "+x=1"],
    [*BASE, "hydra.mode=MULTIRUN", "trainer.batch_size=32"],  # more values (the sweeper's)
    [*BASE[1:], "trainer.batch_size=32"],  # one override less: not derived
    [*BASE, "init.weight={mode:fan_out}"],  # a dict: Hydra merges it, not derived
]
IDS = ["seed", "values", "order", "group", "add", "more", "less", "dict"]
NOT_DERIVABLE = ("group", "add", "less", "dict")


def _yaml(overrides: list[str]) -> str:
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    return OmegaConf.to_yaml(cfg)


@pytest.fixture
def cache():
    register_configs()
    compose_cache.install()
    yield compose_cache._memo
    compose_cache.uninstall()


@pytest.mark.parametrize(("overrides", "kind"), list(zip(CASES, IDS, strict=True)), ids=IDS)
def test_derived_config_equals_a_full_composition(cache, overrides, kind):
    _yaml(BASE)  # composed and kept
    try:
        derived = _yaml(overrides)
        again = _yaml(overrides)  # the same command line again: neither parsed nor searched
    except Exception as err:  # noqa: BLE001 - the same error from a full composition
        derived = again = type(err)
    assert again == derived and len(compose_cache._again) == (1 if again is derived else 2)
    assert sum(len(v) for v in cache.values()) == (2 if kind in NOT_DERIVABLE else 1)
    compose_cache.uninstall()
    try:
        assert derived == _yaml(overrides)
    except Exception as err:  # noqa: BLE001
        assert derived is type(err)


def test_values_inside_a_chosen_group_derive(cache):
    """optimizer.lr beside optimizer=momentum (each job of a sweep over optimizers and lrs)
    is derived from another job of that optimizer; another optimizer is composed."""
    _yaml(["optimizer=momentum", "optimizer.lr=0.1", "seed=0"])
    jobs = [["optimizer=momentum", "optimizer.lr=0.01", "seed=1"],
            ["seed=2", "optimizer.lr=0.3", "optimizer=momentum"],
            ["optimizer=adam", "optimizer.lr=0.01", "seed=1"]]  # fmt: skip
    derived = [_yaml(job) for job in jobs]
    assert sum(len(v) for v in cache.values()) == 2  # momentum once, adam once
    compose_cache.uninstall()
    assert derived == [_yaml(job) for job in jobs]


def test_a_sweeps_own_config_is_composed_once(cache):
    """Hydra composes the sweep's config twice (`get_mode`, then `multirun` with
    hydra.mode=MULTIRUN); the second is derived and equals its full composition."""
    sweep = ["activation=relu,tanh", "seed=0,1,2,3", "trainer.epochs=3", "hydra.job.name=train"]
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra

        def compose_multirun(overrides: list[str]) -> str:
            cfg = hydra.compose_config("config", overrides, run_mode=RunMode.MULTIRUN)
            return OmegaConf.to_yaml(cfg)

        compose_multirun(sweep)
        derived = compose_multirun([*sweep, "hydra.mode=MULTIRUN"])
        assert sum(len(v) for v in cache.values()) == 1
        compose_cache.uninstall()
        assert derived == compose_multirun([*sweep, "hydra.mode=MULTIRUN"])


def test_only_new_groups_are_composed(cache):
    for seed in range(4):
        for act in ("relu", "tanh"):
            _yaml([f"activation={act}", f"seed={seed}", "hydra.job.name=train"])
    assert sum(len(v) for v in cache.values()) == 2  # one full composition per activation


def test_errors_are_hydras_own(cache):
    _yaml(BASE)
    with pytest.raises(Exception, match="nosuchkey"):
        _yaml(["activation=relu", "nosuchkey=0", "trainer.epochs=3", "hydra.job.name=train"])
    with pytest.raises(Exception, match="seed"):
        _yaml(["activation=relu", "seed=abc", "trainer.epochs=3", "hydra.job.name=train"])


def test_jobs_at_a_default_choice_derive_from_the_sweeps_own_config(cache):
    """The sweep's config (MULTIRUN) leaves swept keys at their defaults: a job whose swept
    groups are at the default choice is derived from it; another choice is composed."""
    sweep = ["activation=relu,tanh", "seed=0,1,2,3", "hydra.job.name=train"]
    jobs = [["hydra.job.name=train", "hydra.mode=MULTIRUN", f"activation={a}", "seed=2"]
            for a in ("relu", "tanh")]  # fmt: skip
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        hydra.compose_config("config", sweep, run_mode=RunMode.MULTIRUN)
        derived = [OmegaConf.to_yaml(hydra.compose_config("config", j, RunMode.RUN)) for j in jobs]
        assert sum(len(v) for v in cache.values()) == 2  # the sweep's, and tanh's
        compose_cache.uninstall()
        assert derived == [
            OmegaConf.to_yaml(hydra.compose_config("config", j, RunMode.RUN)) for j in jobs
        ]
