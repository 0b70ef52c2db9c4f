"""Each config of a sweep composed once per process, and the others derived from it (issue 11).

Hydra composes a sweep's configs from scratch many times in one process: the CLI's preflight
check (every job), `get_mode` and `multirun` (the sweep's own config, twice), the sweeper's
`validate_batch_is_legal` and the launcher (every job, twice each); each composition walks the
defaults tree and merges every file (~0.2-0.5 s on 2 cores). `install()` wraps
`ConfigLoaderImpl.load_configuration` with a per-process memo. A command line is derived from
one composed before with the same config, mode, search path and working directory when every
override it has that the earlier one lacks or sets differently is a plain scalar value
(`seed=1` against `seed=0`, `trainer.epochs=5`, `hydra.mode=MULTIRUN`; never a config group,
an addition `+k=v`, a deletion, a dict or list, or what Hydra computes after composing, e.g.
`hydra.searchpath`, `hydra.runtime`): a copy of that composition with those values applied by
Hydra's own `_apply_overrides_to_config`, and the `hydra.overrides` lists and `override_dirname`
rebuilt as Hydra builds them. A scalar override cannot change the defaults list (Hydra's
defaults may interpolate only other groups' choices), and it sets its key the same way in
either order, so the result is the composition's.

A command line asked for again as it was (the sweeper's `validate_batch_is_legal`
composes every job, then the launcher does) is derived as it was the first time, without
parsing its overrides or searching the compositions again.

Compositions are kept pickled (Hydra's own joblib and submitit launchers pickle job configs),
so a copy is `pickle.loads` (~2 ms) instead of `copy.deepcopy` (~14 ms). Anything else, and
any error, goes to Hydra's own `load_configuration` (same messages). The compositions that
remain (one per combination of config-group choices, and the sweep's own) share the config
files loaded before: Hydra's `CachingConfigRepository` keeps each file it loads for one
composition; here a pickled copy of it is kept per (search path, file) for the command, and
each composition gets its own copy (~40% of a composition's time).
tests/test_compose_cache.py compares derived configs with full compositions.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.config_repository import CachingConfigRepository, ConfigResult
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.core.utils import JobRuntime
from hydra.types import RunMode
from omegaconf import MISSING, DictConfig, OmegaConf

MAX_ENTRIES = 256  # composed configs kept per (search path, config, mode, cwd)
NOT_DERIVED = (  # keys Hydra reads while composing, or sets after the overrides
    "hydra.searchpath",
    "hydra.job.env_copy",
    "hydra.job.env_set",
    "hydra.job.config_name",
    "hydra.job.override_dirname",
    "hydra.overrides",
    "hydra.runtime",
)
SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class _Composed:
    overrides: dict[str, Override]  # by key
    blob: bytes  # the pickled config
    choices: dict[str, Any]  # hydra.runtime.choices
    mode: RunMode


_memo: dict[tuple, list[_Composed]] = {}
_Again = tuple[_Composed, list[Override], list[Override]]  # (composition, parsed, changed)
_again: dict[tuple, _Again] = {}  # by the command line, as asked (_again_key)
_files: dict[tuple, bytes] = {}  # (search path, config path) -> pickled ConfigResult
_original = ConfigLoaderImpl.load_configuration
_original_load_file = CachingConfigRepository.load_config


def install() -> None:
    """Wrap Hydra's config loader, with an empty memo: one command line's compositions, never
    a config file as an earlier command (in the same process: tests) read it."""
    _memo.clear()
    _again.clear()
    _files.clear()
    ConfigLoaderImpl.load_configuration = _load_configuration
    CachingConfigRepository.load_config = _load_file


def uninstall() -> None:
    ConfigLoaderImpl.load_configuration = _original
    CachingConfigRepository.load_config = _original_load_file
    _memo.clear()
    _again.clear()
    _files.clear()


def _load_file(self: CachingConfigRepository, config_path: str) -> ConfigResult | None:
    """Hydra's per-composition file cache, filled from the files loaded for this command."""
    key = f"config_path={config_path}"
    if key in self.cache:
        return self.cache[key]
    sources = tuple((s.provider, s.path) for s in self.delegate.get_sources())
    blob = _files.get((sources, config_path))
    if blob is None:
        ret = self.delegate.load_config(config_path=config_path)
        try:
            _files[(sources, config_path)] = pickle.dumps(ret, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - a config that does not pickle: loaded each time
            pass
    else:
        ret = pickle.loads(blob)
    self.cache[key] = ret
    return ret


def _load_configuration(self: ConfigLoaderImpl, config_name: str | None, overrides: list[str],
                        run_mode: Any, from_shell: bool = True,
                        validate_sweep_overrides: bool = True) -> DictConfig:  # fmt: skip
    args = (config_name, overrides, run_mode, from_shell, validate_sweep_overrides)
    try:
        again = _again_key(self, *args)
        if again in _again:  # the same command line (the sweeper's check, then the launcher)
            seen, parsed, changed = _again[again]
            return _derive(pickle.loads(seen.blob), parsed, changed)
        parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
        by_key = {o.get_key_element(): o for o in parsed}
        if len(by_key) != len(parsed):
            return _original(self, *args)  # a key given twice: order matters, compose
        if validate_sweep_overrides:
            self.validate_sweep_overrides_legal(parsed, run_mode, from_shell)
        entries = _memo.setdefault(_base_key(self, config_name, by_key), [])
        for seen in entries:
            changed = _changed_values(self, seen, by_key, run_mode)
            if changed is not None:
                _again[again] = (seen, parsed, changed)
                return _derive(pickle.loads(seen.blob), parsed, changed)
    except Exception:  # noqa: BLE001 - Hydra's own path raises it with its own message
        return _original(self, *args)
    cfg = _original(self, *args)
    if len(entries) < MAX_ENTRIES:
        try:
            blob = pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - a value that does not pickle: not kept
            return cfg
        choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
        entries.append(_Composed(by_key, blob, choices, run_mode))
        _again[again] = (entries[-1], parsed, [])
    return cfg


def _again_key(loader: ConfigLoaderImpl, *args: Any) -> tuple:
    """A command line asked for before, as it was asked, where it was asked (its overrides
    were parsed and found legal then)."""
    config_name, overrides, *rest = args
    return _sources(loader), os.getcwd(), _job_name(), config_name, tuple(overrides), *rest


def _base_key(loader: ConfigLoaderImpl, config_name: str | None,
              by_key: dict[str, Override]) -> tuple:  # fmt: skip
    # with hydra.job.name overridden, the job's name does not come from the runtime
    name = None if "hydra.job.name" in by_key else _job_name()
    return _sources(loader), config_name, os.getcwd(), name


def _sources(loader: ConfigLoaderImpl) -> tuple:
    return tuple((p.provider, p.path) for p in loader.get_search_path().get_path())


def _job_name() -> str | None:
    try:
        return JobRuntime().get("name")
    except KeyError:
        return None


def _changed_values(loader: ConfigLoaderImpl, seen: _Composed, now: dict[str, Override],
                    mode: RunMode) -> list[Override] | None:  # fmt: skip
    """The overrides of `now` to apply to `seen`'s config, or None when `now` cannot be derived
    from it: `now` keeps every key of `seen`, and each override that `seen` lacks or sets
    differently is a plain scalar value (in `seen` too). A job (RUN) derives from its sweep's
    own config (MULTIRUN, which leaves the swept keys at their defaults) when each swept group
    is at its default choice and no group choice was left missing (`???`)."""
    groups = seen.choices
    cross = seen.mode == RunMode.MULTIRUN and mode == RunMode.RUN
    if not (seen.mode == mode or (cross and MISSING not in groups.values())):
        return None
    if not seen.overrides.keys() <= now.keys():
        return None
    changed = []
    for key, o in now.items():
        if mode == RunMode.RUN and o.is_sweep_override():
            return None  # Hydra's own error
        before = seen.overrides.get(key)
        if before is not None and o.input_line == before.input_line:
            continue
        if before is not None and before.is_sweep_override() and cross:
            if key in groups:  # the group's default choice, or a composition of its own
                if not (_choice(o) and o.value() == groups[key]):
                    return None
                continue
            before = None  # a swept value: unset in the sweep's own config
        if not _plain_value(loader, o, groups) or (
            before is not None and not _plain_value(loader, before, groups)
        ):
            return None
        if key.startswith(NOT_DERIVED) or any(
            k != key
            and (k.startswith(key + ".") or key.startswith(k + "."))
            and not _same_choice(k, seen, now)
            for k in now
        ):
            return None
        changed.append(o)
    return changed


def _same_choice(key: str, seen: _Composed, now: dict[str, Override]) -> bool:
    """`key` chooses a config group's option, the same in both: a value inside that group
    (`optimizer.lr` beside `optimizer=momentum`) is applied after the defaults are composed,
    as Hydra applies it, whatever the order on the command line."""
    before = seen.overrides.get(key)
    return (
        key in seen.choices
        and before is not None
        and before.input_line == now[key].input_line
        and _choice(now[key])
    )


def _choice(o: Override) -> bool:
    return (
        o.type == OverrideType.CHANGE
        and o.package is None
        and not o.is_sweep_override()
        and isinstance(o.value(), str)
    )


def _plain_value(loader: ConfigLoaderImpl, o: Override, groups: dict[str, Any]) -> bool:
    key = o.get_key_element()
    return (
        o.type == OverrideType.CHANGE
        and o.package is None
        and not o.is_sweep_override()
        and "/" not in key
        and key not in groups
        and isinstance(o.value(), SCALARS)
        and not loader.repository.group_exists(key)
    )


def _derive(cfg: DictConfig, parsed: list[Override], changed: list[Override]) -> DictConfig:
    """A copy of a composition with the changed values; the bookkeeping Hydra does after it."""
    ConfigLoaderImpl._apply_overrides_to_config(changed, cfg)
    app = [o for o in parsed if not o.is_hydra_override()]
    cfg.hydra.overrides.hydra = [o.input_line for o in parsed if o.is_hydra_override()]
    cfg.hydra.overrides.task = [o.input_line for o in app]
    job = cfg.hydra.job
    job.override_dirname = get_overrides_dirname(
        overrides=app,
        kv_sep=job.config.override_dirname.kv_sep,
        item_sep=job.config.override_dirname.item_sep,
        exclude_keys=job.config.override_dirname.exclude_keys,
    )
    return cfg
