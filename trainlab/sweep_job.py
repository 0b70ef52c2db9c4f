"""One job of a sweep in this process: Hydra's `hydra.core.utils.run_job` (1.3), with two of
its four copies of the config less (issue 11).

Hydra's `run_job` sets `HydraConfig` twice (each a copy of the whole `hydra` node: once to
resolve the job's directory, once more after writing it into `hydra.runtime.output_dir`),
deep-copies that node for the `JobReturn` and the job's config for its task. Here `HydraConfig`
is set once, to the same copy made by pickling (trainlab.fastconf.hydra_node), and the
directory written into it as well (what the second `set_config` would copy); that copy, which
`HydraConfig` lets go of when the job ends, is the `JobReturn`'s; and the task's config is a
pickled copy of the config less its `hydra` node (fastconf.without_hydra). Everything else is Hydra's, in Hydra's order:
the same `JobReturn`, logging, `.hydra/` files (when `hydra.output_subdir` is set), working
directory, environment and callbacks (tests/test_sweep_job.py compares it with Hydra's).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra import version
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    JobStatus,
    _check_hydra_context,
    _flush_loggers,
    _save_config,
    configure_log,
    env_override,
)
from hydra.core.utils import run_job as hydra_run_job
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from trainlab.fastconf import hydra_node, without_hydra


def run_job(task_function: TaskFunction, config: DictConfig, job_dir_key: str,
            job_subdir_key: str | None, hydra_context: HydraContext,
            configure_logging: bool = True) -> JobReturn:  # fmt: skip
    if config.hydra.job.chdir is None and not version.base_at_least("1.2"):
        return hydra_run_job(task_function, config, job_dir_key, job_subdir_key, hydra_context,
                             configure_logging)  # fmt: skip  # it warns, then changes directory
    _check_hydra_context(hydra_context)
    callbacks = hydra_context.callbacks
    old_cwd = os.getcwd()
    orig_hydra_cfg = HydraConfig.instance().cfg
    HydraConfig.instance().cfg = hydra_node(config)  # the job's directory may read ${hydra:...}
    output_dir = str(OmegaConf.select(config, job_dir_key))
    if job_subdir_key is not None:
        output_dir = os.path.join(output_dir, str(OmegaConf.select(config, job_subdir_key)))
    node: Any = HydraConfig.instance().cfg
    for runtime in (config.hydra.runtime, node.hydra.runtime):
        with read_write(runtime), open_dict(runtime):
            runtime.output_dir = os.path.abspath(output_dir)
    _chdir = None
    try:
        ret = JobReturn()
        task_cfg = without_hydra(config)
        ret.cfg = task_cfg
        hydra_cfg = node  # this job's own copy (HydraConfig gets its old one back below)
        ret.hydra_cfg = hydra_cfg
        ret.overrides = OmegaConf.to_container(config.hydra.overrides.task)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        _chdir = bool(hydra_cfg.hydra.job.chdir)  # None: False from version_base 1.2 on
        if _chdir:
            os.chdir(output_dir)
            ret.working_dir = output_dir
        else:
            ret.working_dir = os.getcwd()
        if configure_logging:
            configure_log(config.hydra.job_logging, config.hydra.verbose)
        if config.hydra.output_subdir is not None:
            hydra_output = Path(config.hydra.runtime.output_dir) / config.hydra.output_subdir
            _save_config(task_cfg, "config.yaml", hydra_output)
            _save_config(hydra_cfg, "hydra.yaml", hydra_output)
            _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
        with env_override(hydra_cfg.hydra.job.env_set):
            callbacks.on_job_start(config=config, task_function=task_function)
            try:
                ret.return_value = task_function(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as e:  # noqa: BLE001 - Hydra records it in the JobReturn
                ret.return_value = e
                ret.status = JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        _flush_loggers()
        callbacks.on_job_end(config=config, job_return=ret)
        return ret
    finally:
        HydraConfig.instance().cfg = orig_hydra_cfg
        node.hydra._set_parent(node)  # as in Hydra's copy: no path into the task's
        if _chdir:
            os.chdir(old_cwd)
