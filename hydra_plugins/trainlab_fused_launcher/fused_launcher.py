"""`hydra/launcher=fused` (trainlab's default): Hydra's basic launcher, jobs one after another
in this process, except that the jobs differing only in seed are trained together as one
fused model when the first of them runs (trainlab.sweep_fusion), with those differing in
optimizer.lr or the init as well (`hydra.launcher.fuse_values=false`: seeds only); the others
then find their results written and are skipped. `hydra.launcher.fuse=false` runs every job
separately.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from trainlab.sweep_fusion import fused_group, seed_groups
from trainlab.sweep_job import run_job
from trainlab.sweep_record import open_launch

log = logging.getLogger(__name__)


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.trainlab_fused_launcher.fused_launcher.FusedLauncher"
    fuse: bool = True  # false: every job trained on its own, as Hydra's basic launcher does
    fuse_values: bool = True  # false: only jobs that differ in nothing but the seed fuse


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf)


class FusedLauncher(Launcher):
    def __init__(self, fuse: bool = True, fuse_values: bool = True) -> None:
        self.fuse, self.fuse_values = fuse, fuse_values
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Every job in order (the sweeper reads the returns in this order)."""
        open_launch(self.config)
        configs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = sweep_config.hydra.job.num = idx
            configs.append(sweep_config)
        groups = seed_groups(job_overrides, self.fuse_values) if self.fuse else {}
        log.info(f"Launching {len(job_overrides)} jobs locally ({len(groups)} groups fused)")
        runs = []
        for i, (overrides, sweep_config) in enumerate(zip(job_overrides, configs, strict=True)):
            log.info(f"\t#{initial_job_idx + i} : {' '.join(filter_overrides(overrides))}")
            with fused_group([configs[j] for j in groups.get(i, [])]):
                runs.append(run_job(
                    hydra_context=self.hydra_context, task_function=self.task_function,
                    config=sweep_config, job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                ))  # fmt: skip
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs
