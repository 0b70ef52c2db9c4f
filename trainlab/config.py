"""Compose a trainlab config outside the command line (tests, scripts, notebooks)."""

from __future__ import annotations

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig

from trainlab.cli import conf_dir


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The config `trainlab train OVERRIDES` would run, without Hydra's own `hydra` node."""
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []))
