"""Every bad input one line, before Hydra creates a directory.

`preflight(args)` composes the config the command line asks for, with Hydra's own parser and
config loader (each combination of a sweep's command-line values once), and turns what Hydra
would report in many lines (a type error, an unknown option or key, a bad override) into one
ConfigError line. It checks what only the launch knows (an output directory that cannot be
written, `hydra.launcher.n_jobs=0`) and, for a single run, every value (`validate`).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from trainlab.errors import ConfigError

MULTIRUN_FLAGS = ("-m", "--multirun")
MAX_COMBINATIONS = 512  # a sweep's command-line combinations composed to check them


class Sweep(NamedTuple):
    """What a checked sweep will launch with."""

    launcher: str  # the launcher's class name (FusedLauncher, BasicLauncher, PoolLauncher ...)
    workers: bool  # its jobs run in worker processes (trainlab.sweep_pool)


def preflight(args: list[str], conf_dir: str, check_values: bool = True) -> Sweep | None:
    """Raise ConfigError for what the command line would fail on; Hydra's flags pass through.
    For a sweep, how it will launch; None for one run."""
    if any(a.startswith("-") and a not in MULTIRUN_FLAGS for a in args):
        return None  # --help, --cfg, --info, -cn ...: Hydra's own
    multirun = any(a in MULTIRUN_FLAGS for a in args)
    overrides = [a for a in args if a not in MULTIRUN_FLAGS]
    combinations = _combinations(overrides, multirun)
    sweep = None
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        if multirun:
            _compose_sweep(overrides)
        for combination in combinations:
            cfg = _compose(combination)
            _check_launch(cfg.hydra, multirun)
            if multirun and (sweep is None or not sweep.workers):
                launcher = str(cfg.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1]
                sweep = Sweep(launcher, _in_workers(cfg))
            if check_values and not multirun:  # a sweep records a bad value in that job
                from trainlab.validate import validate

                with open_dict(cfg):
                    del cfg["hydra"]
                _one_line_errors(validate, cfg)
    return sweep


def _combinations(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The job override lists a basic sweep of these command-line values runs."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError(one_line(err)) from err
    choices = []
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices.append([f"{key}={override.get_value_element_as_str()}"])
        elif not multirun:
            raise ConfigError(
                f"{override.input_line}: a sweep of values needs -m (trainlab train -m ...)"
            )
        elif override.is_discrete_sweep():
            choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        # an interval (a sweeper's search space) has no value to compose with
    return [list(c) for c in itertools.islice(itertools.product(*choices), MAX_COMBINATIONS)]


def _compose_sweep(overrides: list[str]) -> None:
    """The sweep's own config, as Hydra's `get_mode` composes it next: with
    trainlab.compose_cache installed, the jobs at a swept group's default choice are derived
    from it instead of composed (its errors are the jobs' own, reported by `_compose`)."""
    try:
        GlobalHydra.instance().hydra.compose_config(
            "config", overrides, run_mode=RunMode.MULTIRUN, validate_sweep_overrides=False
        )
    except (HydraException, OmegaConfBaseException):
        return


def _compose(overrides: list[str]) -> DictConfig:
    try:
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
        OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
        return cfg
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from err


def _one_line_errors(check, cfg: DictConfig) -> None:
    try:
        check(cfg)
    except OmegaConfBaseException as err:  # a value read while checking (an interpolation)
        raise ConfigError(one_line(err)) from err


def _check_launch(hydra: DictConfig, multirun: bool) -> None:
    n_jobs = hydra.launcher.get("n_jobs")
    if str(hydra.launcher.get("_target_", "")).endswith(".FusedLauncher"):
        from trainlab.sweep_pool import resolve_n_jobs

        resolve_n_jobs(n_jobs, None)  # auto, -1 or >= 1
    if n_jobs is not None and n_jobs == 0:
        raise ConfigError(
            "hydra.launcher.n_jobs=0 is not allowed: an integer >= 1 (parallel jobs), "
            "or -1 for one job per core"
        )
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        target = Path(str(OmegaConf.select(hydra, key[len("hydra.") :])))
    except OmegaConfBaseException:
        return  # resolved by Hydra at launch (a custom resolver): checked when written
    check_writable(key, target)


def _in_workers(cfg: DictConfig) -> bool:
    """The launcher runs units in worker processes (trainlab.sweep_pool): n_jobs > 1 for the
    pool launcher, resolved with the sweep's `threads` for the default (fused) one."""
    launcher = cfg.hydra.launcher
    target = str(launcher.get("_target_", ""))
    if target.endswith(".PoolLauncher"):
        return (launcher.get("n_jobs") or 1) > 1
    if not target.endswith(".FusedLauncher"):
        return False
    from trainlab.sweep_pool import resolve_n_jobs

    return resolve_n_jobs(launcher.get("n_jobs"), cfg.get("threads")) > 1


def check_writable(key: str, target: Path) -> None:
    """The nearest existing folder of `target` takes a new file (a real write: root ignores
    permission bits, a read-only mount does not)."""
    target = target if target.is_absolute() else Path.cwd() / target
    for part in target.parts:
        if len(part.encode()) > 255:
            raise ConfigError(f"{key}={target}: a name over 255 bytes ({part[:40]}...)")
    folder = target
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{key}={target}: {folder} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".trainlab-write-check.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise ConfigError(
            f"{key}={target}: cannot write into {folder} ({err.strerror}); "
            "allowed: a folder you can write"
        ) from err


def one_line(err: BaseException) -> str:
    """Hydra's and OmegaConf's many-line messages as one line naming the key."""
    for e in (err, err.__cause__, err.__context__):
        if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
            return f"{e.full_key}: {_lines(e)[0]}"
    lines = _lines(err)
    if getattr(err, "override", None) is not None:  # a parse error: name the override
        return f"{err.override}: {lines[0] if lines else 'cannot be parsed'}"
    if any(line.startswith("Available options in") for line in lines):
        start = next(i for i, line in enumerate(lines) if line.startswith("Available options"))
        options = [o for o in lines[start + 1 :] if not o.startswith(("Config search", "provider"))]
        return f"{lines[0]}; allowed: {', '.join(options)}"
    cause = err.__cause__
    detail = f" ({_lines(cause)[0]})" if cause is not None and _lines(cause) else ""
    text = lines[0] if lines else type(err).__name__
    if len(lines) > 1 and not lines[1].startswith("See "):
        text = f"{text} {lines[1]}"
    return text + detail


def _lines(err: BaseException) -> list[str]:
    return [line.strip() for line in str(err).splitlines() if line.strip()]
