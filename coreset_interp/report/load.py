"""Finding a sweep's jobs and reading what the report needs from each job's ``result.json`` and config."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coreset_interp.jobstate import liveness
from coreset_interp.report import keys as K

DEFAULT_TABLE1_PERCENTS = (10, 20, 30, 40, 50)


@dataclass
class JobResult:
    """One job's ``result.json``.

    Attributes:
        path: the file.
        payload: its content.
    """

    path: Path
    payload: dict[str, Any]

    @property
    def status(self) -> str:
        """``completed``, ``failed``, ``running``, ``killed`` (its heartbeat stopped), or ``unreadable``."""
        return str(self.payload.get(K.STATUS, "unreadable"))

    @property
    def name(self) -> str:
        """The job's override string (its W&B run name)."""
        job = self.payload.get(K.JOB) or {}
        return str(job.get(K.JOB_NAME) or self.path.parent.name)

    @property
    def config(self) -> dict[str, Any]:
        """The job's resolved config (empty when the result holds none)."""
        return self.payload.get(K.CONFIG) or {}


def load_results(sweep_dir: Path, exclude: Sequence[Path] = ()) -> list[JobResult]:
    """Read every ``result.json`` below a sweep folder, oldest first.

    Args:
        sweep_dir: the sweep (or any) folder.
        exclude: folders to skip (e.g. the report's own output).

    Returns:
        One entry per file; unreadable files (a job being written by a foreign tool) get status
        ``unreadable`` and the parse error.
    """
    skip = [Path(p).resolve() for p in exclude]
    found: list[tuple[float, JobResult]] = []
    for path in Path(sweep_dir).rglob("result.json"):
        resolved = path.resolve()
        if any(resolved.is_relative_to(s) for s in skip) or "wandb" in path.parts:
            continue
        try:
            payload = json.loads(path.read_text())
            if not isinstance(payload, dict):
                raise ValueError("not a JSON object")
            # A "running" job whose heartbeat stopped (or whose pid is gone on this host) was killed.
            if (status := liveness(payload)) != payload.get(K.STATUS):
                payload = {**payload, K.STATUS: status}
        except (OSError, ValueError) as err:
            payload = {K.STATUS: "unreadable", K.ERROR: f"{type(err).__name__}: {err}"}
        found.append((path.stat().st_mtime, JobResult(path, payload)))
    found.sort(key=lambda item: (item[0], str(item[1].path)))
    return [r for _, r in found]


def selector_field(config: dict[str, Any], name: str) -> Any:
    """One field of a job's selector config, flat (``selector.<name>``) or in the old ``params`` block
    (``selector.params.<name>``), so that results of either config shape read alike.

    Args:
        config: a job's resolved config.
        name: the field, e.g. ``source_model`` or ``base``.

    Returns:
        The value, or None when neither place holds it.
    """
    scfg = config.get("selector") or {}
    if name in scfg:
        return scfg[name]
    return (scfg.get("params") or {}).get(name)


def selector_label(payload: dict[str, Any]) -> str:
    """The selector's row label: its name, or ``base<-source`` for a transfer coreset (Sec. 4.5).

    Args:
        payload: a job's result.

    Returns:
        The label.
    """
    name = str(payload.get(K.SELECTOR, "?"))
    config = payload.get(K.CONFIG) or {}
    source = selector_field(config, "source_model")
    if name == "transfer" or source is not None:
        base = (selector_field(config, "base") or "?") if name == "transfer" else name
        source = source or {}
        return f"{base}<-{source.get('name', '?') if isinstance(source, dict) else source}"
    return name


def table1_percents(results: Sequence[JobResult]) -> list[int]:
    """Args:
        results: loaded results.

    Returns:
        The ratios (%) of Table 1: the newest job's ``metric.table1_percents``, else 10..50.
    """
    for r in reversed(results):
        metric = r.config.get("metric") or {}
        if metric.get("table1_percents"):
            return [int(p) for p in metric["table1_percents"]]
    return list(DEFAULT_TABLE1_PERCENTS)


def job_row(r: JobResult) -> dict[str, Any]:
    """Args:
        r: a loaded result.

    Returns:
        The job's line of the report: folder, name, status, wall seconds, artifacts computed / reused, error.
    """
    p = r.payload
    recs = p.get(K.ARTIFACTS) or []
    return {
        "dir": str(r.path.parent),
        "name": r.name,
        "status": r.status,
        "wall_seconds": p.get(K.WALL_SECONDS),
        "computed": sum(bool(x.get(K.ARTIFACT_COMPUTED)) for x in recs),
        "reused": sum(not x.get(K.ARTIFACT_COMPUTED) for x in recs),
        "error": p.get(K.ERROR),
    }


def wandb_target(results: Sequence[JobResult], requested: str, fallback_group: str) -> dict[str, Any]:
    """Where the report's W&B run goes: the mode, project, entity and group the sweep's jobs used.

    Args:
        results: loaded results.
        requested: ``auto`` (as the jobs' logger config), ``offline``, ``online`` or ``disabled``.
        fallback_group: the group when no job names one (the sweep folder's name).

    Returns:
        ``mode`` (``disabled`` when no job logged to W&B and none was requested), ``project``, ``entity``
        and ``group`` (the jobs' most common).
    """
    mode = requested
    if requested == "auto":
        mode = "disabled"
        for r in reversed(results):
            logger = r.config.get("logger") or {}
            if logger.get("name") == "wandb":
                mode = str(logger.get("mode") or os.environ.get("WANDB_MODE", "offline"))
                break
    logger = {}
    groups: Counter[str] = Counter()
    for r in results:
        logger = r.config.get("logger") or logger
        group = (r.payload.get(K.JOB) or {}).get(K.JOB_GROUP)
        if group:
            groups[str(group)] += 1
    return {
        "mode": mode,
        "project": str(logger.get("project") or "coreset_interp"),
        "entity": logger.get("entity"),
        "group": groups.most_common(1)[0][0] if groups else fallback_group,
    }
