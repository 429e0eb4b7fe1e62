"""Weights & Biases: one run per job, offline by default, falling back instead of failing the job."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from coreset_interp import results
from coreset_interp.trackers.base import TRACKERS, Tracker, TrackerFallbackWarning


def _scalars(entry: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in entry.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            out[prefix + key] = float(value)
        elif isinstance(value, dict) and key != results.PHI_PER_CLASS:
            out.update(_scalars(value, f"{prefix}{key}/"))
    return out


WANDB_MODES = ("online", "offline", "disabled")


@TRACKERS.register
class WandbTracker(Tracker):
    """Weights & Biases, one run per job (offline by default).

    A run that cannot start online (server unreachable, no API key) falls back to offline, one that cannot
    start at all to no tracker, each with one :class:`TrackerFallbackWarning`: the logger never fails a job.

    Args:
        mode: ``offline``, ``online`` or ``disabled`` (the YAML reads ``WANDB_MODE``).
        project: W&B project.
        entity: W&B entity (None = the default).
        init_timeout: seconds ``wandb.init`` may take before the run falls back.
        finish_timeout: seconds ``finish`` may spend uploading (0 = until done); what is left stays on disk
            for ``wandb sync``.
    """

    def __init__(
        self,
        mode: str = "offline",
        project: str = "coreset_interp",
        entity: str | None = None,
        init_timeout: float = 90.0,
        finish_timeout: float = 0.0,
    ):
        self.mode = mode
        self.project = project
        self.entity = entity
        self.init_timeout = float(init_timeout)
        self.finish_timeout = float(finish_timeout)
        self.run: Any = None
        #: What fell back and why (one line each), for the job's result.json.
        self.warnings: list[str] = []

    def _fallback(self, msg: str) -> None:
        self.warnings.append(msg)
        warnings.warn(msg, TrackerFallbackWarning, stacklevel=3)

    def start(self, config: dict[str, Any], job: dict[str, Any]) -> None:
        """Open the run: group = sweep/experiment, job_type = interpreter, tags = chosen options.

        Args:
            config: the resolved job config.
            job: ``name``, ``group``, ``dir``, ``tags``, ``job_type``.
        """
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        mode = str(self.mode)
        valid = ", ".join(WANDB_MODES)
        if mode not in WANDB_MODES:
            self._fallback(
                f"W&B mode {mode!r} (logger.mode / WANDB_MODE) is not one of {valid}: logging offline"
            )
            mode = "offline"
        kwargs = {
            "project": self.project,
            "entity": self.entity,
            "group": job.get("group"),
            "job_type": job.get("job_type"),
            "name": job.get("name"),
            "tags": [str(t)[:64] for t in job.get("tags", [])],
            "config": config,
            "dir": str(job["dir"]),
            # A second job in the same process (joblib, tests) must get a run of its own.
            "reinit": "finish_previous",
        }
        settings = {"init_timeout": self.init_timeout, "finish_timeout": self.finish_timeout}
        try:
            self.run = wandb.init(mode=mode, settings=wandb.Settings(**settings), **kwargs)
        except Exception as err:  # noqa: BLE001 - a logger must never cost the job
            cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if mode == "online":
                self._fallback(
                    f"W&B online run could not start ({type(err).__name__}: {cause}): logging offline "
                    f"instead (valid modes: {valid}; upload later with `wandb sync`)"
                )
                try:
                    self.run = wandb.init(mode="offline", settings=wandb.Settings(**settings), **kwargs)
                except Exception as err2:  # noqa: BLE001
                    self._fallback(
                        f"W&B offline run could not start either ({type(err2).__name__}: {err2}): no tracker"
                    )
                    self.run = None
            else:
                self._fallback(
                    f"W&B {mode} run could not start ({type(err).__name__}: {cause}): no tracker for this "
                    f"job (valid modes: {valid}); its result.json and metrics.jsonl are written as usual"
                )
                self.run = None
        if self.run is not None:
            self.run.define_metric(results.PERCENT)
            self.run.define_metric("coreset/*", step_metric=results.PERCENT)

    def log_ratio(self, entry: dict[str, Any]) -> None:
        """Args:
        entry: one rho's results, logged against x = rho in percent.
        """
        if self.run is None:
            return
        data = {f"coreset/{k}": v for k, v in _scalars(entry).items() if k not in (results.PERCENT,)}
        data[results.PERCENT] = entry[results.PERCENT]
        self.run.log(data)

    def finish(self, result: dict[str, Any], images: dict[str, Path] | None = None) -> None:
        """Write the summary (the job's Table 1 entry, full-data numbers) and finish the run.

        Args:
            result: the job's result.
            images: figures to attach.
        """
        if self.run is None:
            return
        import wandb

        try:
            summary = {"status": result.get("status")}
            for key in ("table1", "full"):
                if isinstance(result.get(key), dict):
                    summary.update(_scalars(result[key], f"{key}/"))
            if result.get(results.MODEL_ACCURACY) is not None:
                summary[results.MODEL_ACCURACY] = result[results.MODEL_ACCURACY]
            if result.get("error"):
                summary["error"] = str(result["error"])[:500]
            self.run.summary.update(summary)
            if images:
                self.run.log(
                    {name: wandb.Image(str(path)) for name, path in images.items() if Path(path).is_file()}
                )
        finally:
            try:
                self.run.finish(exit_code=0 if result.get("status") == "completed" else 1)
            except Exception as err:  # noqa: BLE001 - the job's own files are already written
                self._fallback(
                    f"W&B run could not finish ({type(err).__name__}: {str(err)[:200]}); the job's files are "
                    "written; what was logged stays in the run folder for `wandb sync`"
                )
            self.run = None

    def upload_report(
        self,
        *,
        group: str,
        name: str,
        table: tuple[list[str], list[list[Any]]],
        images: dict[str, Path],
        config: dict[str, Any],
        folder: Path,
    ) -> Path:
        """Log a sweep's report as one run of the sweep's group (``job_type`` ``report``): its table as a
        ``wandb.Table`` named ``table1`` and its figures under ``figures/<stem>``.

        Args:
            group: the sweep's W&B group (the jobs' runs share it).
            name: the run's name.
            table: (columns, rows) of the table.
            images: figure name -> PNG.
            config: the run's config.
            folder: where the run's files go (``<folder>/wandb``).

        Returns:
            The run's local folder (for ``wandb sync`` when offline).
        """
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        columns, rows = table
        wtable = wandb.Table(columns=columns)
        for row in rows:
            wtable.add_data(*row)
        run = wandb.init(
            mode=self.mode,
            project=self.project,
            entity=self.entity,
            group=group,
            job_type="report",
            name=name,
            tags=["report"],
            dir=str(folder),
            config=config,
            reinit="finish_previous",
        )
        try:
            data: dict[str, Any] = {"table1": wtable}
            data.update({f"figures/{Path(n).stem}": wandb.Image(str(p)) for n, p in images.items()})
            run.log(data)
            return Path(run.dir).parent
        finally:
            run.finish()
