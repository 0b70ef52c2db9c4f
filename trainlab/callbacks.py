"""Hydra callbacks: output directories claimed at the start, `trainlab compare` at the end of
every multirun.

Registered in conf/config.yaml under `hydra.callbacks`; Hydra calls `on_multirun_end` on the
launching machine once every job has returned, with the multirun's config.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from trainlab.errors import ConfigError

log = logging.getLogger(__name__)


class ClaimOutputDirs(Callback):
    """Create the run or sweep directory before Hydra does: a default one never collides with
    another started the same second; a sweep directory holding another sweep is refused."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from trainlab.sweep_record import claim_output_dir

        claim_output_dir(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from trainlab.sweep_record import start_sweep

        start_sweep(config)


class CompareOnMultirunEnd(Callback):
    """Run compare on the sweep directory; a broken compare is logged, never fails the sweep.

    Once compare is written, the sweep exits 1 if any job failed (no summary, or status
    "failed"); a diverged job is a result, not a failure.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from trainlab.compare import compare
        from trainlab.report.terminal import format_terminal

        try:
            # Hydra's `now` resolver is cached on this config: same dir the launcher used.
            sweep_dir = str(config.hydra.sweep.dir)
            result = compare(sweep_dir)
        except ConfigError as err:  # no job directory below the sweep dir
            log.warning("%s", err)
            return
        except Exception:  # the jobs' results matter more than their comparison
            log.exception("trainlab compare failed at the end of the multirun")
            return
        print(format_terminal(result))
        failed = sum(job.status in ("failed", "missing") for job in result.jobs)
        if failed:
            print(
                f"trainlab: {failed} of {len(result.jobs)} jobs failed "
                f"(see {sweep_dir}/comparison.md)",
                file=sys.stderr,
            )
            raise SystemExit(1)
