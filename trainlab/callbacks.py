"""Hydra callbacks: `trainlab compare` at the end of every multirun.

Registered in conf/config.yaml under `hydra.callbacks`; Hydra calls `on_multirun_end` on the
launching machine once every job has returned, with the multirun's config.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class CompareOnMultirunEnd(Callback):
    """Run compare on the sweep directory; a broken compare is logged, never fails the sweep.

    Once compare is written, the sweep exits 1 if any job failed (no summary, or status
    "failed"); a diverged job is a result, not a failure.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            # Hydra's `now` resolver is cached on this config: same dir the launcher used.
            sweep_dir = Path(str(config.hydra.sweep.dir))
            from trainlab.compare import run_compare

            code = run_compare(str(sweep_dir))
            if code != 0:
                log.warning("trainlab compare %s exited with code %d", sweep_dir, code)
        except Exception:  # the jobs' results matter more than their comparison
            log.exception("trainlab compare failed at the end of the multirun")
            return
        failed, total = failed_jobs(sweep_dir)
        if failed:
            print(
                f"trainlab: {failed} of {total} jobs failed (see {sweep_dir}/comparison.md)",
                file=sys.stderr,
            )
            raise SystemExit(1)


def failed_jobs(sweep_dir: Path) -> tuple[int, int]:
    """(jobs without a summary or with status "failed", all jobs) below a sweep directory."""
    failed = total = 0
    for overrides in sweep_dir.rglob(".hydra/overrides.yaml"):
        total += 1
        try:
            status = json.loads((overrides.parent.parent / "summary.json").read_text())["status"]
        except (OSError, ValueError, KeyError, TypeError):
            status = "failed"
        failed += status == "failed"
    return failed, total
