"""OmegaConf's copy and YAML, the same result in a fraction of the time (issue 11).

A sweep copies each job's config several times (Hydra's `run_job`, the fused launcher's
task configs) and writes three `.hydra/` files a job. `copy.deepcopy` of a composed config
walks every node in Python (~14 ms with Hydra's node on 2 cores); a pickle round trip
rebuilds the same nodes, flags and types (~4 ms; Hydra's own joblib and submitit launchers
pickle job configs). `OmegaConf.to_yaml` dumps with PyYAML's Python emitter (~24 ms for
Hydra's node); `to_yaml` here dumps the same container with OmegaConf's representers and
libyaml's emitter (~8 ms) when PyYAML has it, byte for byte what OmegaConf writes
(tests/test_fastconf.py).
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf._utils import get_omega_conf_dumper


def copy_config(cfg: DictConfig) -> DictConfig:
    """`copy.deepcopy(cfg)`; a config holding a value that does not pickle is deep-copied."""
    try:
        return pickle.loads(pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - any pickling error: the slow, general copy
        return copy.deepcopy(cfg)


def _dumper() -> type:
    python_dumper = get_omega_conf_dumper()
    if not getattr(yaml, "__with_libyaml__", False):
        return python_dumper

    class OmegaConfCDumper(yaml.CDumper):
        pass

    for kind, representer in python_dumper.yaml_representers.items():
        OmegaConfCDumper.add_representer(kind, representer)
    for kind, representer in python_dumper.yaml_multi_representers.items():
        OmegaConfCDumper.add_multi_representer(kind, representer)
    return OmegaConfCDumper


_DUMPER = _dumper()


def to_yaml(node: Any) -> str:
    """`OmegaConf.to_yaml(node)` (unresolved, keys in order); a dict of nodes is dumped as the
    config it would make, without copying the nodes into one first."""
    if isinstance(node, dict):
        container = {k: OmegaConf.to_container(v, enum_to_str=True) for k, v in node.items()}
    else:
        container = OmegaConf.to_container(node, enum_to_str=True)
    return yaml.dump(
        container, Dumper=_DUMPER, default_flow_style=False, allow_unicode=True, sort_keys=False
    )


def without_hydra(config: DictConfig) -> DictConfig:
    """A copy of a job's config less its `hydra` node, what Hydra's `run_job` gives the task
    (a deep copy of the whole, then the node deleted): the rest copied by one pickle round
    trip, the node (half of a composed config's nodes) never copied."""
    content = config.__dict__["_content"]
    if not isinstance(content, dict) or "hydra" not in content:
        return copy_config(config)
    config.__dict__["_content"] = {k: v for k, v in content.items() if k != "hydra"}
    try:
        return copy_config(config)
    finally:
        config.__dict__["_content"] = content


def hydra_node(config: DictConfig) -> DictConfig:
    """`HydraConfig.set_config(config)`'s copy of the `hydra` node: a root holding only it,
    read-only and parented to `config` (its values may interpolate the task's); copied by one
    pickle round trip, where `OmegaConf.masked_copy` deep-copies it node by node."""
    OmegaConf.set_readonly(config.hydra, True)
    node = config._get_node("hydra")
    node._set_parent(None)  # pickled alone, not with the config above it
    try:
        copied = copy_config(node)
    finally:
        node._set_parent(config)
    root = DictConfig({}, flags={"no_deepcopy_set_nodes": True})  # takes the copy as it is
    root["hydra"] = copied
    root._set_flag("no_deepcopy_set_nodes", None)
    copied._set_parent(config)
    return root
