"""Which jobs of a sweep train as one fused model, and the hand-over from launcher to task.

The launcher (hydra/launcher=fused) groups the jobs whose overrides are equal but for the
seed; while the first job of a group runs, `fused_group` holds the group's configs, and the
task trains them all at once (trainlab.fused). A group that has no fused form, or whose
configs turn out to differ in more than the seed, is trained job by job as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from trainlab.fastconf import without_hydra

log = logging.getLogger("trainlab")
SEED_KEYS = ("seed", "+seed", "++seed")
VALUE_NODES = ("init", "activation", "pair", "augmentation", "preprocess")  # pair: act + init
VALUES = (
    "optimizer.lr",
    "regularizer.weight_decay",
    *VALUE_NODES,
)  # may differ within a group (fused_plan.why_not_fusable)
_GROUP: ContextVar[list[DictConfig] | None] = ContextVar("trainlab_fused_group", default=None)
TRAINED: set[Path] = set()  # job directories this process trained as members of a group


def seed_groups(
    job_overrides: Sequence[Sequence[str]], values: bool = False
) -> dict[int, list[int]]:
    """{index of a group's first job: indices of every job of the group} for groups of >= 2:
    the jobs whose overrides are equal but for the seed and, with `values`, the VALUES (lr, weight decay,
    init, activation; whether and how they fuse is decided on the configs: fused_plan.py)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, overrides in enumerate(job_overrides):
        rest = tuple(sorted(o for o in overrides if not _free(o.split("=", 1)[0], values)))
        groups.setdefault(rest, []).append(i)
    return {jobs[0]: jobs for jobs in groups.values() if len(jobs) > 1}


def work_units(n_jobs: int, groups: dict[int, list[int]], workers: int) -> list[list[int]]:
    """The sweep's jobs (0..n_jobs-1) as units for `workers` processes, biggest first: each
    fused group one unit, each other job its own. A group is halved (every other job) while
    that shortens the sweep: units measured in jobs plus one for each unit's set-up, dealt to
    the workers largest first (a group of 30 on 2 workers: 15 and 15; four of 8: kept whole)."""
    grouped = {j for jobs in groups.values() for j in jobs}
    units = sorted([*groups.values(), *([i] for i in range(n_jobs) if i not in grouped)],
                   key=lambda u: (-len(u), u[0]))  # fmt: skip
    while units and len(units[0]) > 1:
        big = units[0]  # every other job: each half keeps the group's mix of values (its lrs)
        trial = sorted([big[0::2], big[1::2], *units[1:]], key=lambda u: (-len(u), u[0]))
        if _makespan(trial, workers) >= _makespan(units, workers):
            break
        units = trial
    return units


def _makespan(units: list[list[int]], workers: int) -> int:
    loads = [0] * workers
    for unit in units:  # largest first
        loads[loads.index(min(loads))] += len(unit) + 1
    return max(loads)


def _free(key: str, values: bool) -> bool:
    if key in SEED_KEYS:
        return True
    key = key.lstrip("+")
    return values and any(key == v or key.startswith(f"{v}.") for v in VALUES)


@contextmanager
def fused_group(sweep_configs: list[DictConfig]) -> Iterator[None]:
    token = _GROUP.set(sweep_configs)
    try:
        yield
    finally:
        _GROUP.reset(token)


def task_config(sweep_config: DictConfig) -> DictConfig:
    """A job's config as its task receives it (Hydra's run_job drops the hydra node)."""
    return without_hydra(sweep_config)


def job_dir(sweep_config: DictConfig) -> Path:
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


def train_pending_group(threads: int | None) -> list[dict[str, Any]] | None:
    """Train the current job's group fused; None when there is none or it cannot be fused."""
    from trainlab.errors import ConfigError
    from trainlab.fused import train_fused
    from trainlab.fused_models import FusionUnsupported
    from trainlab.fused_plan import fusable_parts, why_not_fusable, why_not_worth_it

    sweep_configs = _GROUP.get()
    if not sweep_configs:
        return None
    dirs = [job_dir(c) for c in sweep_configs]  # once: each resolves Hydra's interpolations
    if any((d / "summary.json").exists() for d in dirs):
        return None  # an earlier attempt: each job resumes, skips or is refused on its own
    cfgs = [task_config(c) for c in sweep_configs]
    for cfg in cfgs:
        if cfg.threads is None:
            cfg.threads = threads
    parts = fusable_parts(cfgs)
    mine = None
    for part in parts:
        try:
            fused = train_fused(
                [cfgs[i] for i in part],
                [dirs[i] for i in part],
                [list(sweep_configs[i].hydra.overrides.task) for i in part],
                validated=True,
            )
        except (FusionUnsupported, ConfigError) as err:  # each job records its own error
            log.debug("trained one by one, not fused: %s", err)
            return mine
        TRAINED.update(dirs[i].resolve() for i in part[1:])
        if part[0] == 0:  # this job's group
            mine = fused
    if not parts:
        why = why_not_fusable(cfgs) or why_not_worth_it(cfgs[0]) or "no two have the same layers"
        log.debug("trained one by one, not fused: %s", why)
    return mine
