"""`hydra/launcher=pool hydra.launcher.n_jobs=N`: up to N jobs at once, each in a fresh process.

Hydra's joblib launcher (loky) ends the whole sweep when one worker dies (TerminatedWorkerError)
and takes the jobs running beside it down too. Here every job is its own process, forked from
a server that has imported torch once (trainlab.sweep_pool, which the fused launcher's
`n_jobs` shares). A job that dies (SIGKILL, out of memory) is logged and reported as killed by
compare; every other job goes on and keeps its result; the next job takes the freed slot.
Ctrl-C or SIGTERM stops launching: running jobs checkpoint and stop.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, open_dict

from trainlab.sweep_pool import Job, run_units, start_server
from trainlab.sweep_record import open_launch

log = logging.getLogger(__name__)


@dataclass
class PoolLauncherConf:
    _target_: str = "hydra_plugins.trainlab_pool_launcher.pool_launcher.PoolLauncher"
    n_jobs: int = 2  # jobs running at once


ConfigStore.instance().store(
    group="hydra/launcher", name="pool", node=PoolLauncherConf, provider="trainlab"
)


class PoolLauncher(Launcher):
    def __init__(self, n_jobs: int = 2) -> None:
        self.n_jobs = max(1, n_jobs)
        self.config: DictConfig | None = None
        self.hydra_context: Any = None
        self.task_function: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        open_launch(self.config)
        log.info(
            "Launching %d jobs, %d at a time, one process each", len(job_overrides), self.n_jobs
        )
        if self.n_jobs > 1:
            start_server()
        units = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(config):
                config.hydra.job.id = f"{config.hydra.job.name}_{idx}"
                config.hydra.job.num = idx
            units.append([Job(idx, list(overrides), config)])
        results = run_units(units, self.n_jobs, self.hydra_context, self.task_function)
        return [results[i] for i in sorted(results)]
