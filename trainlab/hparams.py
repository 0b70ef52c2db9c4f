"""What TensorBoard's HParams dashboard shows for a run: the same keys in every job of a sweep.

The keys are every config group's choice plus every key the sweep sets (on its command line or
in an experiment's `hydra.sweeper.params`), never the seed nor a setting that changes no number
(Hydra's `override_dirname.exclude_keys`). Every job reads them from the sweep's own record
(`sweep.json`, written before any job starts), so all jobs declare the same keys, the same types
and domains, and which keys vary (`differs`): TensorBoard shows the varying keys first. The
session group is the config without its seed, so TensorBoard groups the seeds of one
configuration (and averages their metrics).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from trainlab.runs import NOT_HASHED
from trainlab.schema import GROUPS

# the scalars every training run logs (TensorBoard shows the last value of each)
METRICS = ("val/acc", "val/loss", "train/loss", "test/acc")
ALWAYS_EXCLUDED = ("seed", "experiment", *NOT_HASHED)
PAIR_SETS = ("activation", "init")  # what pair=NAME chooses (conf/pair/)
STATUS = {"completed": api_pb2.STATUS_SUCCESS, "diverged": api_pb2.STATUS_FAILURE,
          "failed": api_pb2.STATUS_FAILURE}  # fmt: skip


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # number | string | bool
    values: tuple = ()  # the values it takes across the sweep, when they are listed
    interval: tuple[float, float] | None = None  # a continuous search space (Optuna)
    differs: bool = False


def sweep_keys() -> tuple[list[Key], dict[str, Any]]:
    """(every key of the sweep or run, this job's own values of the keys it overrides).
    Outside Hydra (a test's compose): the config groups only."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return [Key(g, "string") for g in GROUPS], {}
    hc = HydraConfig.get()
    excluded = {*ALWAYS_EXCLUDED, *hc.job.config.override_dirname.exclude_keys}
    overrides = list(hc.overrides.task)
    if hc.mode == RunMode.MULTIRUN:
        record = Path(hc.sweep.dir) / "sweep.json"
        sweep = json.loads(record.read_text())["overrides"] if record.is_file() else overrides
        params = hc.sweeper.get("params") or {}
        overrides = [f"{k}={v}" for k, v in params.items()] + list(sweep)  # as the sweeper does
    keys = {k.name: k for k in _parse(overrides, excluded)}  # the command line wins
    for group in GROUPS:
        keys.setdefault(group, Key(group, "string", differs=_set_by_pair(group, keys)))
    mine = MEMBER_OVERRIDES.get()  # a fused member's own, else this job's
    own = {o.key_or_group: o.value() for o in _parsed(mine or list(hc.overrides.task), excluded)}
    return sorted(keys.values(), key=lambda k: (not k.differs, k.name)), own


# A fused group's writers open while its first job runs: each member's own overrides
# (trainlab.fused) stand in for that job's.
MEMBER_OVERRIDES: ContextVar[list[str] | None] = ContextVar("member_overrides", default=None)


def _set_by_pair(group: str, keys: dict[str, Key]) -> bool:
    return group in PAIR_SETS and "pair" in keys and keys["pair"].differs


def _parsed(overrides: list[str], excluded: set[str]) -> list[Any]:
    return [
        o
        for o in map(_parse_override, overrides)
        if not o.is_hydra_override()
        and not o.is_delete()
        and o.key_or_group not in excluded
        and not o.key_or_group.startswith("hydra")
    ]


@functools.cache
def _parse_override(override: str) -> Any:
    """Hydra's parse of one override, once per process: every job of a sweep parses the same
    sweep overrides (and a fused group's members the same own ones) when its writer opens."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([override])[0]


def _parse(overrides: list[str], excluded: set[str]) -> list[Key]:
    keys = []
    for o in _parsed(overrides, excluded):
        values: tuple = ()
        interval = None
        if not o.is_sweep_override():
            values = (o.value(),)
        elif o.is_interval_sweep():
            interval = (float(o.value().start), float(o.value().end))
        elif o.is_discrete_sweep():
            values = tuple(o.sweep_iterator())
        kind = _kind(values) if interval is None else "number"
        differs = interval is not None or len({_plain(v, kind) for v in values}) != 1
        keys.append(Key(o.key_or_group, kind, values, interval, differs))
    return keys


def _kind(values: tuple) -> str:
    if values and all(isinstance(v, bool) for v in values):
        return "bool"
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "number"
    return "string"


def _plain(value: Any, kind: str) -> Any:
    """A value as TensorBoard holds it: float, bool or str (containers as JSON)."""
    if isinstance(value, DictConfig) and "name" in value:  # a config group's chosen option
        value = value.name
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    return value if isinstance(value, str) else json.dumps(value, default=str)


def values(cfg: DictConfig, keys: list[Key], own: dict[str, Any]) -> dict[str, Any]:
    """The run's value of every key: as its job overrode it, else as its config says."""
    return {
        k.name: _plain(own[k.name] if k.name in own else OmegaConf.select(cfg, k.name), k.kind)
        for k in keys
    }


def group_name(cfg: DictConfig, varying: dict[str, Any]) -> str:
    """The seeds of one configuration share it: the values of the varying keys (TensorBoard's
    trial id) and a hash of the config without its seed."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("seed", None)
    for key in NOT_HASHED:
        node, leaf = key.rsplit(".", 1)
        container.get(node, {}).pop(leaf, None)
    text = json.dumps(container, sort_keys=True, default=str)
    label = ",".join(f"{k}={_short(v)}" for k, v in varying.items()) or "config"
    return f"{label} #{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _short(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def session_summaries(cfg: DictConfig) -> list[Summary]:
    """The experiment (keys, metrics) and this run's session start, for its events file."""
    keys, own = sweep_keys()
    infos = [_info(k) for k in keys]
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in METRICS]
    run = values(cfg, keys, own)
    varying = {k.name: run[k.name] for k in keys if k.differs}
    start = plugin_data_pb2.SessionStartInfo(
        group_name=group_name(cfg, varying), start_time_secs=time.time()
    )
    for name, value in run.items():
        _set(start.hparams[name], value)
    return [
        _summary(metadata.EXPERIMENT_TAG, experiment=api_pb2.Experiment(
            hparam_infos=infos, metric_infos=metrics)),
        _summary(metadata.SESSION_START_INFO_TAG, session_start_info=start),
    ]  # fmt: skip


def session_end(status: str) -> Summary | None:
    """How the session ended; None for a run that may still resume (interrupted)."""
    if status not in STATUS:
        return None
    end = plugin_data_pb2.SessionEndInfo(status=STATUS[status], end_time_secs=time.time())
    return _summary(metadata.SESSION_END_INFO_TAG, session_end_info=end)


def _info(key: Key) -> api_pb2.HParamInfo:
    kind = {"number": api_pb2.DATA_TYPE_FLOAT64, "bool": api_pb2.DATA_TYPE_BOOL}
    info = api_pb2.HParamInfo(
        name=key.name, type=kind.get(key.kind, api_pb2.DATA_TYPE_STRING), differs=key.differs
    )
    if key.interval is not None:
        info.domain_interval.min_value, info.domain_interval.max_value = key.interval
    elif key.values:
        info.domain_discrete.extend(sorted({_plain(v, key.kind) for v in key.values}, key=str))
    return info


def _set(target: Any, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, float):
        target.number_value = value
    else:
        target.string_value = value


def _summary(tag: str, **data: Any) -> Summary:
    content = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **data)
    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])
