"""trainlab.compose_cache: a config derived from an earlier composition equals Hydra's own."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
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
]


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


@pytest.mark.parametrize("overrides", CASES, ids=["seed", "values", "order", "group", "add"])
def test_derived_config_equals_a_full_composition(cache, overrides):
    _yaml(BASE)  # composed and kept
    derived = _yaml(overrides)
    derivable = overrides[0] != "activation=tanh" and "+x=1" not in overrides
    assert sum(len(v) for v in cache.values()) == (1 if derivable else 2)
    compose_cache.uninstall()
    assert derived == _yaml(overrides)


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
