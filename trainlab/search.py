"""Search-space extensions for `hydra/sweeper=optuna` (its `custom_search_space` hook)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


def seed_round_robin(cfg: DictConfig, trial: Any) -> None:
    """Trial k trains with seed k mod `experiment.seeds` (default 3).

    Each seed then gets every n-th trial: the trials split into n equal, independent random
    searches, one per seed, each with the budget of one seed of a grid. Sampling the seed
    instead would give the seeds unequal shares of the budget.
    """
    experiment = cfg.get("experiment") or {}
    seed = trial.number % int(experiment.get("seeds") or 3)
    trial.suggest_int("seed", seed, seed)  # a one-value distribution: recorded like a parameter
