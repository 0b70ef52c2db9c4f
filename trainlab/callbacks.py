"""Hydra callbacks: `trainlab compare` at the end of every multirun.

Registered in conf/config.yaml under `hydra.callbacks`; Hydra calls `on_multirun_end` on the
launching machine once every job has returned, with the multirun's config.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class CompareOnMultirunEnd(Callback):
    """Run compare on the sweep directory; a broken compare is logged, never fails the sweep."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            # Hydra's `now` resolver is cached on this config: same dir the launcher used.
            sweep_dir = str(config.hydra.sweep.dir)
            from trainlab.compare import run_compare

            code = run_compare(sweep_dir)
            if code != 0:
                log.warning("trainlab compare %s exited with code %d", sweep_dir, code)
        except Exception:  # the jobs' results matter more than their comparison
            log.exception("trainlab compare failed at the end of the multirun")
