"""A sweep's own record: `sweep.json` in its directory says which sweep it is (a hash of the
command's overrides and the sweeper's search space) and which jobs it runs, so that a re-run of
the same command into the directory is recognised, a different sweep is refused, and compare
can account for jobs that never started. Output directories are claimed atomically."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, read_write

from trainlab.io import write_json
from trainlab.runs import NOT_HASHED, new_dir

RECORD = "sweep.json"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def claim_output_dir(config: DictConfig, kind: str) -> Path:
    """hydra.<kind>.dir, created now. A default (timestamped) one that exists already, from a
    run or sweep started the same second, becomes `<dir>_2`, ...; one given on the command line
    is used as it is (a re-run into it resumes)."""
    node = config.hydra[kind]
    path = Path(str(node.dir))
    explicit = any(o.split("=", 1)[0] == f"hydra.{kind}.dir" for o in config.hydra.overrides.hydra)
    if explicit:
        return path
    path = new_dir(path)
    with read_write(config.hydra):
        node.dir = str(path)
        # a sweep's jobs are composed again from these overrides (Hydra's load_sweep_config)
        config.hydra.overrides.hydra.append(f"hydra.{kind}.dir={path}")
    return path


def job_overrides(config: DictConfig) -> list[list[str]] | None:
    """Every job's overrides, as Hydra's basic sweeper will launch them (None for a sweeper
    that chooses its jobs as it goes, e.g. Optuna)."""
    if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = config.hydra.sweeper.get("params") or {}
    overrides = [f"{k}={v}" for k, v in params.items()]
    overrides += list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(overrides)
    return BasicSweeper.split_arguments(parsed, None)[0]


def sweep_hash(config: DictConfig) -> str:
    task = sorted(o for o in config.hydra.overrides.task if o.split("=")[0] not in NOT_HASHED)
    params = config.hydra.sweeper.get("params")
    params = {} if params is None else OmegaConf.to_container(params, resolve=False)
    identity = {"task": task, "params": params, "sweeper": config.hydra.sweeper.get("_target_")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def start_sweep(config: DictConfig) -> Path:
    """Claim the sweep directory and write its record; a different sweep's directory is refused
    with one line (exit 2) before anything in it changes."""
    sweep_dir = claim_output_dir(config, "sweep")
    record = {
        "sweep_hash": sweep_hash(config),
        "overrides": list(config.hydra.overrides.task),
        "jobs": job_overrides(config),
    }
    previous = read_record(sweep_dir)
    if previous is not None and previous.get("sweep_hash") != record["sweep_hash"]:
        print(
            f"trainlab: error: hydra.sweep.dir={sweep_dir} holds another sweep "
            f"({' '.join(previous.get('overrides') or [])}); allowed: the same sweep command "
            "(it resumes), or another hydra.sweep.dir",
            file=sys.stderr,
        )
        raise SystemExit(2)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json(sweep_dir / RECORD, record)
    return sweep_dir


def read_record(sweep_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((Path(sweep_dir) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def open_launch(config: Any) -> Path:
    """What every trainlab launcher does before its jobs, as Hydra's own launchers do: Hydra's
    globals, its logging, the sweep directory (returned)."""
    from hydra.core.utils import configure_log, setup_globals

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return sweep_dir
