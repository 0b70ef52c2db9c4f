"""trainlab.fastconf: the same copy and the same YAML as OmegaConf's own, byte for byte."""

from __future__ import annotations

import copy
import enum

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write

from trainlab.config import conf_dir
from trainlab.fastconf import copy_config, hydra_node, to_yaml, without_hydra
from trainlab.schema import register_configs


class Colour(enum.Enum):
    RED = 1


TRICKY = {
    "unicode": "accuracy ≥ 0.9 — ünïcode, 日本",
    "long": "word " * 40,
    "long_unbroken": "x" * 300,
    "lines": "first line\n  indented second\n\nlast: with colon # and hash\n",
    "looks_typed": ["true", "no", "1", "1.5", "1e-3", "null", "~", "", " lead", "trail "],
    "specials": ["a: b", "- item", "{x}", "[y]", "'q'", '"dq"', "%pct", "@at", "`tick", "*star"],
    "interp": "${seed}/${oc.select:experiment.name,sweep}",
    "numbers": [0, -1, 1.0e-5, float("inf"), 3.14159],
    "none": None,
    "nested": {"empty_list": [], "empty_dict": {}, "deep": {"a": [{"b": [1, {"c": None}]}]}},
    "colour": Colour.RED,
}


@pytest.fixture(scope="module")
def composed():
    register_configs()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose(
            config_name="config", overrides=["activation=tanh", "seed=3"], return_hydra_config=True
        )


def test_yaml_is_omegaconfs_own(composed):
    tricky = OmegaConf.create(TRICKY)
    assert to_yaml(tricky) == OmegaConf.to_yaml(tricky)
    assert to_yaml(composed) == OmegaConf.to_yaml(composed)
    assert to_yaml({"hydra": composed.hydra}) == OmegaConf.to_yaml({"hydra": composed.hydra})
    assert to_yaml(composed.hydra.overrides.task) == OmegaConf.to_yaml(
        composed.hydra.overrides.task
    )


def test_copy_is_a_deep_copy(composed):
    copied = copy_config(composed)
    assert OmegaConf.to_yaml(copied) == OmegaConf.to_yaml(copy.deepcopy(composed))
    assert OmegaConf.get_type(copied, "hydra") is OmegaConf.get_type(composed, "hydra")
    assert OmegaConf.is_struct(copied) and OmegaConf.is_struct(composed)
    copied.seed = 7
    assert composed.seed == 3
    with pytest.raises(Exception, match="nosuchkey"):
        copied.nosuchkey = 1  # struct, as the original
    unpicklable = OmegaConf.create({"f": lambda: 0}, flags={"allow_objects": True})
    assert copy_config(unpicklable).f is unpicklable.f  # deep-copied: a function is shared


def _nodes(node, path=""):
    """Every node's path, type, metadata and flags; each child's parent is its container."""
    md = node._metadata
    out = [(path, type(node).__name__, md.ref_type, md.object_type, md.key, md.flags)]
    if isinstance(node, (DictConfig, ListConfig)) and not node._is_none():
        items = node._content.items() if isinstance(node, DictConfig) else enumerate(node._content)
        for key, child in items:
            assert child._get_parent() is node or path == "" and key == "hydra"
            out += _nodes(child, f"{path}.{key}")
    return out


def test_hydra_node_is_set_configs_copy(composed):
    theirs, ours = copy.deepcopy(composed), copy.deepcopy(composed)
    HydraConfig.instance().set_config(theirs)
    expected = HydraConfig.instance().cfg
    got = hydra_node(ours)
    assert OmegaConf.to_yaml(got) == OmegaConf.to_yaml(expected)
    assert _nodes(got) == _nodes(expected)
    assert got.hydra._get_parent() is ours and expected.hydra._get_parent() is theirs
    assert _nodes(ours) == _nodes(theirs)  # the config itself: its hydra node made read-only


def test_without_hydra_is_a_copy_less_the_node(composed):
    expected = copy.deepcopy(composed)
    with read_write(expected), open_dict(expected):
        del expected["hydra"]
    before, keys = _nodes(composed), list(composed)
    got = without_hydra(composed)
    assert OmegaConf.to_yaml(got) == OmegaConf.to_yaml(expected)
    assert _nodes(got) == _nodes(expected)
    assert _nodes(composed) == before and list(composed) == keys  # the config left as it was
