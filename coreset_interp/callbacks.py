"""Hydra callbacks: the sweep report at the end of every multirun.

Registered in ``conf/config.yaml`` under ``hydra.callbacks.report``. Jobs of this runner never raise
(a failed job records ``status: failed`` in its result.json and returns), so Hydra reaches
``on_multirun_end`` even when some jobs failed; a sweep interrupted before its end gets its report from
the rerun, or from ``coreset-interp-report SWEEP_DIR`` at any time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class ReportCallback(Callback):
    """Write Table 1, the figures and ``report.html`` into ``<sweep dir>/report`` when a multirun ends.

    Args:
        enabled: set ``hydra.callbacks.report.enabled=false`` to skip the report.
        wandb: ``auto`` (log Table 1 to W&B when the jobs did, in their mode), ``offline``, ``online``
            or ``disabled``.
    """

    def __init__(self, enabled: bool = True, wandb: str = "auto") -> None:
        self.enabled = bool(enabled)
        self.wandb = str(wandb)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Build the report of the sweep folder; a failure is logged, never raised (the jobs are done).

        Args:
            config: the sweep's config (``hydra.sweep.dir``).
            **kwargs: unused (Hydra passes nothing else to this hook).
        """
        if not self.enabled:
            return
        from coreset_interp.report.build import build_report

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            report = build_report(sweep_dir, wandb_mode=self.wandb)
        except Exception as err:  # noqa: BLE001 - a report error must not turn a finished sweep into a crash
            log.error("sweep report failed: %s (rerun: coreset-interp-report %s)", err, sweep_dir)
            return
        log.info("sweep report: %s (jobs: %s)", report.files["report.html"], report.counts)
