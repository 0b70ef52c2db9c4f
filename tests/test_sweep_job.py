"""trainlab.sweep_job.run_job: what Hydra's own run_job returns, writes and leaves behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobRuntime
from hydra.core.utils import run_job as hydra_run_job
from hydra.types import HydraContext
from omegaconf import OmegaConf, open_dict

import trainlab.hydra_app  # noqa: F401 - the tl_run_name resolver of hydra.sweep.subdir
from trainlab.config import conf_dir
from trainlab.schema import register_configs
from trainlab.sweep_job import run_job


def _job(tmp_path: Path, run, fail: bool):
    register_configs()
    overrides = ["activation=tanh", "seed=3", f"hydra.sweep.dir={tmp_path}", "hydra.job.name=t"]
    overrides += ["hydra.output_subdir=.hydra"]
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        config = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(config):
        config.hydra.job.id = config.hydra.job.num = 5
    JobRuntime.instance().set("name", "t")
    seen = {}

    def task(cfg):
        seen["output_dir"] = HydraConfig.get().runtime.output_dir
        seen["cfg"] = OmegaConf.to_yaml(cfg)
        if fail:
            raise ValueError("the task failed")
        return cfg.seed * 2

    before = HydraConfig.instance().cfg
    ret = run(task, config, "hydra.sweep.dir", "hydra.sweep.subdir",
              HydraContext(config_loader=None, callbacks=Callbacks()))  # fmt: skip
    assert HydraConfig.instance().cfg is before and os.getcwd() == str(Path.cwd())
    files = {p.name: p.read_bytes() for p in Path(ret.working_dir).glob("**/.hydra/*")}
    files |= {p.name: p.read_bytes() for p in tmp_path.glob("**/.hydra/*")}
    value = repr(ret._return_value)  # the property re-raises a failure
    return (seen, OmegaConf.to_yaml(ret.cfg), OmegaConf.to_yaml(ret.hydra_cfg), ret.overrides,
            ret.status, value, ret.task_name, OmegaConf.to_yaml(config), files)  # fmt: skip


@pytest.mark.parametrize("fail", [False, True], ids=["completed", "failed"])
def test_run_job_is_hydras(tmp_path, fail):
    ours = _job(tmp_path / "ours", run_job, fail)
    hydras = _job(tmp_path / "hydras", hydra_run_job, fail)
    assert str(tmp_path / "ours") in ours[0]["output_dir"]
    assert len(ours[-1]) == 3  # config.yaml, hydra.yaml, overrides.yaml
    replaced = [str(x).replace(str(tmp_path / "hydras"), str(tmp_path / "ours")) for x in hydras]
    assert [str(x) for x in ours] == replaced
