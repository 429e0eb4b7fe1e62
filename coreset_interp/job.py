"""One job's lifecycle around the pipeline: its files, status, heartbeat and tracker.

``result.json`` is written at start (status ``running``), kept fresh by a heartbeat while the job runs,
and written at the end with status ``completed``, or ``failed`` with the error; every finished rho is
appended to ``metrics.jsonl`` at once; the heatmap arrays go to ``heatmaps.npz``; the tracker sees the
start, every rho and the end. The stages themselves are :func:`coreset_interp.pipeline.run_stages`.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coreset_interp.config import JobConfig
from coreset_interp.results import COMPLETED, FAILED, RUNNING, JobResult, provenance

log = logging.getLogger(__name__)


def run_job(cfg: JobConfig | Mapping[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """Run one job with its files and tracker: the body of the ``coreset-interp`` command.

    Args:
        cfg: the job config (a resolved mapping is validated inside the job, so that a bad value is
            recorded in result.json like any failure).
        job: ``dir`` (job output folder), ``name``, ``group``, ``tags``, ``job_type``.

    Returns:
        The result.json payload (``status`` tells whether it failed).
    """
    from coreset_interp.jobstate import JobHeartbeat, code_version, skip_completed
    from coreset_interp.trackers import get_logger
    from coreset_interp.tracking import JobFiles

    raw = cfg.raw if isinstance(cfg, JobConfig) else cfg
    code = code_version()
    if (done := skip_completed(dict(raw), Path(job["dir"]), code)) is not None:
        return done
    files = JobFiles(Path(job["dir"]))
    result = JobResult(status=RUNNING, config=dict(raw), job=_job_meta(job), code=code)
    # Shared with the heartbeat thread, which refreshes its ``heartbeat`` and rewrites it.
    payload = result.to_json()
    files.write_result(payload)
    start = time.perf_counter()
    tracker = None
    try:
        typed = JobConfig.from_dict(cfg)
        heartbeat = JobHeartbeat(files.write_result, payload, typed.job_heartbeat)
        files.write_result(payload)  # with the first heartbeat: a live job from its start
        with heartbeat:
            tracker = get_logger(**typed.logger.node())
            tracker.start(dict(raw), dict(job))
            result = _run(typed, result, files, tracker)
        result.status = COMPLETED
    except Exception as err:  # noqa: BLE001 - every failure must end up in result.json
        result.status, result.error = FAILED, f"{type(err).__name__}: {err}"
        result.traceback = traceback.format_exc()
        log.error("job failed: %s", result.error)
    finally:
        result.heartbeat = payload.get("heartbeat")
        result.wall_seconds = time.perf_counter() - start
        _replace(payload, result.to_json())
        files.write_result(payload)
        if tracker is not None:
            _finish(tracker, payload, files.folder)
    return payload


def _run(cfg: JobConfig, header: JobResult, files: Any, tracker: Any) -> JobResult:
    """The stages, with each rho's entry streamed to metrics.jsonl and the tracker, and heatmaps saved."""
    from coreset_interp.heatmaps import save_heatmaps
    from coreset_interp.pipeline import run_stages

    def on_ratio(entry: dict[str, Any]) -> None:
        files.append_metrics(entry)
        tracker.log_ratio(entry)

    result, heatmaps = run_stages(cfg, on_ratio)
    for key in ("status", "config", "job", "code"):
        setattr(result, key, getattr(header, key))
    result.provenance = provenance(header.code or {}, (result.provenance or {}).get("device"))
    result.warnings = list(result.warnings) + list(getattr(tracker, "warnings", []))
    if heatmaps is not None:
        save_heatmaps(heatmaps, files.folder)
    return result


def _finish(tracker: Any, payload: dict[str, Any], folder: Path) -> None:
    """The job's figures (a completed job) and the tracker's end; neither may fail a finished job."""
    images: dict[str, Any] = {}
    if payload["status"] == COMPLETED:
        try:
            from coreset_interp.viz import job_figures
            from coreset_interp.viz_heatmaps import job_heatmap_figures
            from coreset_interp.viz_reality import job_reality_figures

            images = job_figures(payload, folder)
            images.update(job_heatmap_figures(folder))
            images.update(job_reality_figures(payload, folder))
        except Exception as err:  # noqa: BLE001 - a figure must never fail a finished job
            log.warning("job figures failed: %s", err)
    try:
        tracker.finish(payload, images)
    except Exception as err:  # noqa: BLE001
        log.warning("tracker failed to finish: %s", err)


def _replace(payload: dict[str, Any], new: dict[str, Any]) -> None:
    """Replace the contents of the payload the heartbeat thread holds, keeping its last heartbeat."""
    heartbeat = payload.get("heartbeat")
    for key in [k for k in payload if k not in new]:
        payload.pop(key, None)
    payload.update(new)
    if heartbeat is not None and new.get("heartbeat") is None:
        payload["heartbeat"] = heartbeat


def _job_meta(job: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in job.items()}
