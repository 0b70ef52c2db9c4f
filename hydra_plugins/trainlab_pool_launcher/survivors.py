"""Hydra's joblib and submitit launchers, as trainlab runs them: a dead job never ends the sweep
without compare.

With `hydra/launcher=joblib`, `submitit_local` or `submitit_slurm`, trainlab's start-of-sweep
callback swaps the launcher's `_target_` for the class here (`use_survivors`): the plugin's own
settings, trainlab's handling of a dead job.

- submitit (local or Slurm): a job that ends without a result (SIGKILL, `scancel`, out of
  memory, time limit) raises UncompletedJobError when the launcher reads it; here that job is
  logged in one line, the launcher waits for every other job, and the sweep goes on to compare.
- joblib: loky stops every worker when one dies (TerminatedWorkerError); that cannot be undone
  from outside, so the error is logged in one line and the sweep goes on to compare, which
  reports the dead job as killed, the stopped ones as interrupted or killed and the rest as
  never started. Re-running the sweep command resumes them. The pool launcher
  (`hydra/launcher=pool`) keeps the other jobs running instead.
"""

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig, OmegaConf, read_write

from trainlab.sweep_pool import nan_return, no_result

log = logging.getLogger(__name__)
HERE = "hydra_plugins.trainlab_pool_launcher.survivors"


class TrainlabJoblibLauncher(JoblibLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        try:
            return super().launch(job_overrides, initial_job_idx)
        except TerminatedWorkerError as err:
            log.error(
                "a joblib worker died (%s) and joblib stopped the sweep's other jobs; "
                "compare reports each; re-run the sweep command to finish it, or use "
                "hydra/launcher=pool, which keeps the other jobs running",
                str(err).splitlines()[0][:200],
            )
            return [nan_return(list(o), self.config) for o in job_overrides]


class SurvivingSubmitit(BaseSubmititLauncher):
    """BaseSubmititLauncher.launch, except that a job without a result is logged, not raised."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=self.params["submitit_folder"],
            **{
                f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k == "max_num_timeout"
            },
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{
            k if k in base else f"{self._EXECUTOR}_{k}": v
            for k, v in self.params.items() if k not in init_keys
        })  # fmt: skip
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        args = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            args.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    idx,
                    f"job_id_for_{idx}",
                    Singleton.get_state(),
                )
            )
        jobs = executor.map_array(self, *zip(*args, strict=True))
        return [self._result(job, a[0]) for job, a in zip(jobs, args, strict=True)]

    def _result(self, job: Any, overrides: list[str]) -> JobReturn:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        try:
            return job.results()[0]
        except (UncompletedJobError, FailedJobError) as err:
            first = next((line for line in str(err).splitlines() if line.strip()), "")
            state = job.state if self._EXECUTOR == "slurm" else "ended"
            return no_result(overrides, self.config, f"job {job.job_id} {state}: {first[:200]}")


class TrainlabSubmititLocal(SurvivingSubmitit):
    _EXECUTOR = "local"


class TrainlabSubmititSlurm(SurvivingSubmitit):
    _EXECUTOR = "slurm"


PLUGINS = (
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
)
SURVIVORS = {
    f"{PLUGINS[0]}.JoblibLauncher": f"{HERE}.TrainlabJoblibLauncher",
    f"{PLUGINS[1]}.LocalLauncher": f"{HERE}.TrainlabSubmititLocal",
    f"{PLUGINS[1]}.SlurmLauncher": f"{HERE}.TrainlabSubmititSlurm",
}


def use_survivors(config: DictConfig) -> None:
    """The sweep's launcher, if it is Hydra's joblib or submitit one, becomes trainlab's."""
    target = config.hydra.launcher.get("_target_")
    if target in SURVIVORS:
        with read_write(config.hydra.launcher):
            config.hydra.launcher._target_ = SURVIVORS[target]
